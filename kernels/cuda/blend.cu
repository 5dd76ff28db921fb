// The sliding-window accumulator of itkit/cuda_accumulator.h: weighted window logits
// summed into an f32 volume of z slices, each [classes, H, W] (slice-major, so that any
// run of slices is one [slices, classes, H*W] block for the argmax of argmax.cu), plus a
// [D, H, W] weight sum when averages are kept. Labels-only accumulation holds a
// patch-deep ring of slices instead of the volume (slice_ring.h). Windows of one batch
// are added one launch each, in stream order: overlapping windows never race, and the
// sum is deterministic.
#include <algorithm>
#include <cmath>

#include "cuda/argmax.cuh"
#include "cuda/common.cuh"
#include "cuda/slice_ring.h"
#include "itkit/cuda_accumulator.h"
#include "itkit/log.h"

namespace itkit::cuda {
namespace {

struct WindowArgs {
  int64_t oz, oy, ox;   // window origin in the volume (may be outside)
  int64_t pz, py, px;   // window extent
  int64_t D, H, W;      // volume extent
  int64_t classes;
  int64_t slots;        // z slices held: slice z is in slot z % slots (slots == D: all)
};

// One thread per window voxel; the classes of that voxel in a loop. wsum may be null.
template <typename T>
__global__ void AccumulateKernel(const T* __restrict__ logits, const float* __restrict__ weights,
                                 float* __restrict__ sums, float* __restrict__ wsum, WindowArgs a) {
  const int64_t P = a.pz * a.py * a.px, HW = a.H * a.W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < P;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = p % a.px, y = (p / a.px) % a.py, z = p / (a.px * a.py);
    const int64_t vz = a.oz + z, vy = a.oy + y, vx = a.ox + x;
    if (vz < 0 || vz >= a.D || vy < 0 || vy >= a.H || vx < 0 || vx >= a.W) continue;
    const int64_t plane = vy * a.W + vx;
    // vz is in [0, D) here and D < 2^31: a 32-bit remainder (64-bit ones are emulated).
    const int64_t slot = a.slots == a.D ? vz : static_cast<uint32_t>(vz) % static_cast<uint32_t>(a.slots);
    float* slice = sums + slot * a.classes * HW + plane;
    const float w = weights[p];
    for (int64_t c = 0; c < a.classes; ++c) slice[c * HW] += w * ToF(logits[c * P + p]);
    if (wsum != nullptr) wsum[vz * HW + plane] += w;
  }
}

Status CheckLabelType(DType label_dtype, int64_t num_classes) {
  if (label_dtype != DType::kU8 && label_dtype != DType::kI32 && label_dtype != DType::kI64)
    return InvalidArgument("accumulator: labels must be u8, i32 or i64");
  if (label_dtype == DType::kU8 && num_classes > 256)
    return InvalidArgument("accumulator: ", num_classes, " classes do not fit u8 labels");
  return Status::Ok();
}

Status CheckOptions(const AccumulatorOptions& o) {
  if (o.num_classes <= 0) return InvalidArgument("accumulator: num_classes must be positive");
  for (int a = 0; a < 3; ++a) {
    if (o.volume[a] <= 0 || o.volume[a] >= (int64_t{1} << 31))
      return InvalidArgument("accumulator: volume extents must be in [1, 2^31)");
    if (o.patch[a] <= 0) return InvalidArgument("accumulator: patch extents must be positive");
  }
  if (!o.keep_averages) ITKIT_RETURN_IF_ERROR(CheckLabelType(o.label_dtype, o.num_classes));
  const int64_t P = o.patch[0] * o.patch[1] * o.patch[2];
  if (!o.weights.empty()) {
    if (static_cast<int64_t>(o.weights.size()) != P)
      return InvalidArgument("accumulator: ", o.weights.size(), " window weights for a patch of ", P, " voxels");
    for (float w : o.weights)
      if (!(w > 0.0f) || !std::isfinite(w)) return InvalidArgument("accumulator: window weights must be finite and > 0");
  } else if (o.blend != "gaussian" && o.blend != "constant") {
    return InvalidArgument("accumulator: blend must be 'gaussian' or 'constant', got '", o.blend, "'");
  }
  return Status::Ok();
}

class Accumulator final : public SlidingWindowAccumulator {
 public:
  Accumulator(std::shared_ptr<CudaContext> ctx, AccumulatorOptions o)
      : ctx_(std::move(ctx)),
        o_(std::move(o)),
        ring_(o_.volume[0], o_.keep_averages ? o_.volume[0] : std::min(o_.patch[0], o_.volume[0])) {}

  Status Init() {
    HW_ = o_.volume[1] * o_.volume[2];
    P_ = o_.patch[0] * o_.patch[1] * o_.patch[2];
    const std::vector<float> w = o_.weights.empty() ? DefaultWindowWeights(o_.patch, o_.blend, o_.sigma_scale) : o_.weights;
    const size_t sum_floats = static_cast<size_t>(ring_.depth() * o_.num_classes * HW_);
    ITKIT_ASSIGN_OR_RETURN(sums_, ctx_->Allocate(sum_floats * sizeof(float)));
    if (o_.keep_averages) {
      ITKIT_ASSIGN_OR_RETURN(wsum_, ctx_->Allocate(static_cast<size_t>(o_.volume[0] * HW_) * sizeof(float)));
    }
    ITKIT_ASSIGN_OR_RETURN(weights_, ctx_->Allocate(static_cast<size_t>(P_) * sizeof(float)));
    ITKIT_RETURN_IF_ERROR(ctx_->Upload(weights_.data, w.data(), w.size() * sizeof(float)));
    if (!o_.keep_averages) {  // labels are written while windows come
      const size_t label_bytes = static_cast<size_t>(o_.volume[0] * HW_) * DTypeSize(o_.label_dtype);
      ITKIT_ASSIGN_OR_RETURN(labels_, ctx_->Allocate(label_bytes));
    }
    return Reset();
  }

  Status Accumulate(const Tensor& logits, const std::vector<std::array<int64_t, 3>>& origins) override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    const Shape& s = logits.shape();
    if (s.size() != 4 && s.size() != 5)
      return InvalidArgument("accumulator: logits must be [B, classes, z, y, x], got ", ShapeToString(s));
    const size_t off = s.size() - 4;
    const int64_t batch = s.size() == 5 ? s[0] : 1;
    if (s[off] != o_.num_classes || s[off + 1] != o_.patch[0] || s[off + 2] != o_.patch[1] || s[off + 3] != o_.patch[2])
      return InvalidArgument("accumulator: logits ", ShapeToString(s), " do not match ", o_.num_classes,
                             " classes and the patch ", o_.patch[0], "x", o_.patch[1], "x", o_.patch[2]);
    if (static_cast<int64_t>(origins.size()) != batch)
      return InvalidArgument("accumulator: ", origins.size(), " origins for a batch of ", batch);
    if (!IsF32OrF16(logits.dtype())) return InvalidArgument("accumulator: logits must be f32 or f16");
    if (finished_) return InvalidArgument("accumulator: labels-only windows added after ArgMax (Reset first)");
    // Labels only: per window, the slices below it that are final (labels before the
    // window is added, their slots then free for it). The whole batch is admitted on a
    // copy of the ring before anything runs: a batch refused part-way leaves the sums
    // and the ring as they were.
    std::vector<std::vector<SliceRun>> final_before(static_cast<size_t>(batch));
    SliceRing next = ring_;
    if (!o_.keep_averages) {
      for (int64_t b = 0; b < batch; ++b) {
        ITKIT_ASSIGN_OR_RETURN(final_before[static_cast<size_t>(b)],
                               next.Admit(origins[b][0], origins[b][0] + o_.patch[0]));
      }
    }
    const void* src = logits.raw();
    if (logits.device() == DeviceKind::kCpu) {
      if (staging_.bytes < logits.bytes()) {
        staging_ = DeviceBuffer();
        ITKIT_ASSIGN_OR_RETURN(staging_, ctx_->Allocate(logits.bytes()));
      }
      ITKIT_RETURN_IF_ERROR(ctx_->Upload(staging_.data, logits.raw(), logits.bytes()));
      src = staging_.data;
    }
    ring_ = next;  // from here on the batch's work is queued
    const size_t elem = DTypeSize(logits.dtype());
    for (int64_t b = 0; b < batch; ++b) {
      ITKIT_RETURN_IF_ERROR(Finalise(final_before[static_cast<size_t>(b)]));
      WindowArgs a{origins[b][0], origins[b][1], origins[b][2], o_.patch[0], o_.patch[1], o_.patch[2],
                   o_.volume[0], o_.volume[1], o_.volume[2], o_.num_classes, ring_.depth()};
      const void* window = static_cast<const uint8_t*>(src) + static_cast<size_t>(b * o_.num_classes * P_) * elem;
      ITKIT_RETURN_IF_ERROR(DispatchFloat(logits.dtype(), [&]<typename T>() -> Status {
        AccumulateKernel<T><<<GridFor(P_, *ctx_), kThreads, 0, ctx_->stream>>>(
            static_cast<const T*>(window), static_cast<const float*>(weights_.data), static_cast<float*>(sums_.data),
            static_cast<float*>(wsum_.data), a);
        ITKIT_CUDA_CHECK_LAUNCH("AccumulateKernel");
        return Status::Ok();
      }));
    }
    return Status::Ok();
  }

  Result<Tensor> ArgMax(DType label_dtype) override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    const size_t bytes = static_cast<size_t>(o_.volume[0] * HW_) * DTypeSize(label_dtype);
    if (o_.keep_averages) {
      // Any label type, any number of times: the sums stay.
      ITKIT_RETURN_IF_ERROR(CheckLabelType(label_dtype, o_.num_classes));
      if (labels_.bytes < bytes) {
        labels_ = DeviceBuffer();
        ITKIT_ASSIGN_OR_RETURN(labels_, ctx_->Allocate(bytes));
      }
      o_.label_dtype = label_dtype;
      // Dividing by the weight sum would not change the argmax: skipped.
      ITKIT_RETURN_IF_ERROR(Finalise({SliceRun{0, 0, o_.volume[0]}}, /*zero_slots=*/false));
    } else {
      if (label_dtype != o_.label_dtype)
        return InvalidArgument("accumulator: labels were set up as ", DTypeName(o_.label_dtype), ", asked for ",
                               DTypeName(label_dtype));
      if (!finished_) ITKIT_RETURN_IF_ERROR(Finalise(ring_.Finish()));
      finished_ = true;
    }
    ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(label_dtype, {o_.volume[0], o_.volume[1], o_.volume[2]}));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(out.raw(), labels_.data, bytes));
    return out;
  }

  Result<Tensor> AveragedLogits() override {
    if (!o_.keep_averages)
      return InvalidArgument("accumulator: averaged logits need AccumulatorOptions::keep_averages");
    const int64_t C = o_.num_classes, D = o_.volume[0];
    ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(DType::kF32, {C, D, o_.volume[1], o_.volume[2]}));
    std::vector<float> sums(static_cast<size_t>(D * C * HW_)), wsum(static_cast<size_t>(D * HW_));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(sums.data(), sums_.data, sums.size() * sizeof(float)));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(wsum.data(), wsum_.data, wsum.size() * sizeof(float)));
    float* o = out.data<float>();
    for (int64_t z = 0; z < D; ++z)
      for (int64_t c = 0; c < C; ++c) {
        const float* slice = sums.data() + (z * C + c) * HW_;
        const float* w = wsum.data() + z * HW_;
        float* dst = o + (c * D + z) * HW_;
        for (int64_t i = 0; i < HW_; ++i) dst[i] = w[i] > 0.0f ? slice[i] / w[i] : 0.0f;
      }
    return out;
  }

  Status Reset() override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    ITKIT_CUDA_CHECK(cudaMemsetAsync(sums_.data, 0, sums_.bytes, ctx_->stream));
    if (wsum_.data != nullptr) ITKIT_CUDA_CHECK(cudaMemsetAsync(wsum_.data, 0, wsum_.bytes, ctx_->stream));
    ring_.Reset();
    finished_ = false;
    return Status::Ok();
  }

  size_t device_bytes() const override {
    return sums_.bytes + wsum_.bytes + weights_.bytes + staging_.bytes + labels_.bytes;
  }

 private:
  // Labels of each run's slices (argmax over classes); their ring slots are then zeroed
  // for the slices that will take them over.
  Status Finalise(const std::vector<SliceRun>& runs, bool zero_slots = true) {
    const size_t label_size = DTypeSize(o_.label_dtype);
    const size_t slice_floats = static_cast<size_t>(o_.num_classes * HW_);
    for (const SliceRun& r : runs) {
      float* slots = static_cast<float*>(sums_.data) + static_cast<size_t>(r.slot) * slice_floats;
      void* labels = static_cast<uint8_t*>(labels_.data) + static_cast<size_t>(r.z * HW_) * label_size;
      ITKIT_RETURN_IF_ERROR(LaunchArgReduce(*ctx_, slots, DType::kF32, labels, o_.label_dtype, r.count,
                                            o_.num_classes, HW_, false, false));
      if (zero_slots)
        ITKIT_CUDA_CHECK(cudaMemsetAsync(slots, 0, static_cast<size_t>(r.count) * slice_floats * sizeof(float),
                                         ctx_->stream));
    }
    return Status::Ok();
  }

  std::shared_ptr<CudaContext> ctx_;
  AccumulatorOptions o_;
  SliceRing ring_;
  int64_t HW_ = 0, P_ = 0;
  bool finished_ = false;  // labels are complete (ArgMax ran); Reset starts a volume
  DeviceBuffer sums_, wsum_, weights_, staging_, labels_;
};

}  // namespace

std::vector<float> DefaultWindowWeights(const std::array<int64_t, 3>& patch, const std::string& blend,
                                        double sigma_scale) {
  const size_t count = static_cast<size_t>(std::max<int64_t>(0, patch[0] * patch[1] * patch[2]));
  std::vector<float> w(count, 1.0f);
  if (blend != "gaussian" || count == 0) return w;
  std::vector<double> axis[3];
  for (int a = 0; a < 3; ++a) {
    double peak = 0.0;
    for (int64_t i = 0; i < patch[a]; ++i) {
      axis[a].push_back(GaussianWeight1d(i, patch[a], sigma_scale));
      peak = std::max(peak, axis[a].back());
    }
    for (double& v : axis[a]) v /= peak;  // the map's maximum is 1
  }
  size_t i = 0;
  for (int64_t z = 0; z < patch[0]; ++z)
    for (int64_t y = 0; y < patch[1]; ++y)
      for (int64_t x = 0; x < patch[2]; ++x)
        w[i++] = std::max(static_cast<float>(axis[0][z] * axis[1][y] * axis[2][x]), 1e-30f);
  return w;
}

Result<std::unique_ptr<SlidingWindowAccumulator>> SlidingWindowAccumulator::Create(const AccumulatorOptions& options,
                                                                                   std::shared_ptr<Backend> backend) {
  ITKIT_RETURN_IF_ERROR(CheckOptions(options));
  std::shared_ptr<CudaContext> ctx;
  if (backend) {
    ctx = ContextOf(*backend);
    if (!ctx) return InvalidArgument("accumulator: backend '", backend->name(), "' is not a CUDA backend");
  } else {
    CudaBackendOptions bo;
    bo.device = options.device;
    ITKIT_ASSIGN_OR_RETURN(ctx, CudaContext::Create(bo));
  }
  auto acc = std::make_unique<Accumulator>(std::move(ctx), options);
  ITKIT_RETURN_IF_ERROR(acc->Init());
  return std::unique_ptr<SlidingWindowAccumulator>(std::move(acc));
}

}  // namespace itkit::cuda
