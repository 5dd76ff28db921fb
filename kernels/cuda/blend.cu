// The sliding-window accumulator of itkit/cuda_accumulator.h: weighted window logits
// summed into a [classes, D, H, W] f32 volume plus a [D, H, W] weight sum, and the
// argmax over classes (argmax.cu) producing the label volume. Windows of one batch
// are added one launch each, in stream order: overlapping windows never race, and
// the sum is deterministic.
#include <algorithm>
#include <cmath>

#include "cuda/argmax.cuh"
#include "cuda/common.cuh"
#include "itkit/cuda_accumulator.h"
#include "itkit/log.h"

namespace itkit::cuda {
namespace {

struct WindowArgs {
  int64_t oz, oy, ox;   // window origin in the volume (may be outside)
  int64_t pz, py, px;   // window extent
  int64_t D, H, W;      // volume extent
  int64_t classes;
};

// One thread per window voxel; the classes of that voxel in a loop.
template <typename T>
__global__ void AccumulateKernel(const T* __restrict__ logits, const float* __restrict__ weights,
                                 float* __restrict__ sums, float* __restrict__ wsum, WindowArgs a) {
  const int64_t P = a.pz * a.py * a.px, V = a.D * a.H * a.W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < P;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = p % a.px, y = (p / a.px) % a.py, z = p / (a.px * a.py);
    const int64_t vz = a.oz + z, vy = a.oy + y, vx = a.ox + x;
    if (vz < 0 || vz >= a.D || vy < 0 || vy >= a.H || vx < 0 || vx >= a.W) continue;
    const int64_t v = (vz * a.H + vy) * a.W + vx;
    const float w = weights[p];
    for (int64_t c = 0; c < a.classes; ++c) sums[c * V + v] += w * ToF(logits[c * P + p]);
    wsum[v] += w;
  }
}

Status CheckOptions(const AccumulatorOptions& o) {
  if (o.num_classes <= 0) return InvalidArgument("accumulator: num_classes must be positive");
  for (int a = 0; a < 3; ++a) {
    if (o.volume[a] <= 0) return InvalidArgument("accumulator: volume extents must be positive");
    if (o.patch[a] <= 0) return InvalidArgument("accumulator: patch extents must be positive");
  }
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
  Accumulator(std::shared_ptr<CudaContext> ctx, AccumulatorOptions o) : ctx_(std::move(ctx)), o_(std::move(o)) {}

  Status Init() {
    V_ = o_.volume[0] * o_.volume[1] * o_.volume[2];
    P_ = o_.patch[0] * o_.patch[1] * o_.patch[2];
    const std::vector<float> w = o_.weights.empty() ? DefaultWindowWeights(o_.patch, o_.blend, o_.sigma_scale) : o_.weights;
    ITKIT_ASSIGN_OR_RETURN(sums_, ctx_->Allocate(static_cast<size_t>(o_.num_classes * V_) * sizeof(float)));
    ITKIT_ASSIGN_OR_RETURN(wsum_, ctx_->Allocate(static_cast<size_t>(V_) * sizeof(float)));
    ITKIT_ASSIGN_OR_RETURN(weights_, ctx_->Allocate(static_cast<size_t>(P_) * sizeof(float)));
    ITKIT_RETURN_IF_ERROR(ctx_->Upload(weights_.data, w.data(), w.size() * sizeof(float)));
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
    const void* src = logits.raw();
    if (logits.device() == DeviceKind::kCpu) {
      if (staging_.bytes < logits.bytes()) {
        staging_ = DeviceBuffer();
        ITKIT_ASSIGN_OR_RETURN(staging_, ctx_->Allocate(logits.bytes()));
      }
      ITKIT_RETURN_IF_ERROR(ctx_->Upload(staging_.data, logits.raw(), logits.bytes()));
      src = staging_.data;
    }
    const size_t elem = DTypeSize(logits.dtype());
    for (int64_t b = 0; b < batch; ++b) {
      WindowArgs a{origins[b][0], origins[b][1], origins[b][2], o_.patch[0], o_.patch[1], o_.patch[2],
                   o_.volume[0], o_.volume[1], o_.volume[2], o_.num_classes};
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
    if (label_dtype != DType::kU8 && label_dtype != DType::kI32 && label_dtype != DType::kI64)
      return InvalidArgument("accumulator: labels must be u8, i32 or i64");
    if (label_dtype == DType::kU8 && o_.num_classes > 256)
      return InvalidArgument("accumulator: ", o_.num_classes, " classes do not fit u8 labels");
    const size_t bytes = static_cast<size_t>(V_) * DTypeSize(label_dtype);
    if (labels_.bytes < bytes) {
      labels_ = DeviceBuffer();
      ITKIT_ASSIGN_OR_RETURN(labels_, ctx_->Allocate(bytes));
    }
    // Dividing by the weight sum would not change the argmax: skipped.
    ITKIT_RETURN_IF_ERROR(LaunchArgReduce(*ctx_, sums_.data, DType::kF32, labels_.data, label_dtype, 1, o_.num_classes,
                                          V_, false, false));
    ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(label_dtype, {o_.volume[0], o_.volume[1], o_.volume[2]}));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(out.raw(), labels_.data, bytes));
    return out;
  }

  Result<Tensor> AveragedLogits() override {
    ITKIT_ASSIGN_OR_RETURN(Tensor out,
                           Tensor::Allocate(DType::kF32, {o_.num_classes, o_.volume[0], o_.volume[1], o_.volume[2]}));
    std::vector<float> wsum(static_cast<size_t>(V_));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(out.raw(), sums_.data, out.bytes()));
    ITKIT_RETURN_IF_ERROR(ctx_->Download(wsum.data(), wsum_.data, wsum.size() * sizeof(float)));
    float* o = out.data<float>();
    for (int64_t c = 0; c < o_.num_classes; ++c)
      for (int64_t v = 0; v < V_; ++v) {
        const float w = wsum[static_cast<size_t>(v)];
        o[c * V_ + v] = w > 0.0f ? o[c * V_ + v] / w : 0.0f;
      }
    return out;
  }

  Status Reset() override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    ITKIT_CUDA_CHECK(cudaMemsetAsync(sums_.data, 0, sums_.bytes, ctx_->stream));
    ITKIT_CUDA_CHECK(cudaMemsetAsync(wsum_.data, 0, wsum_.bytes, ctx_->stream));
    return Status::Ok();
  }

  size_t device_bytes() const override {
    return sums_.bytes + wsum_.bytes + weights_.bytes + staging_.bytes + labels_.bytes;
  }

 private:
  std::shared_ptr<CudaContext> ctx_;
  AccumulatorOptions o_;
  int64_t V_ = 0, P_ = 0;
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
