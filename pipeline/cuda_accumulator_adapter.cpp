// The pipeline's Accumulator on the GPU: an adapter over the CUDA backend's
// sliding-window accumulator (kernels/cuda/include/itkit/cuda_accumulator.h), so the
// window loop is the same as on the host. Builds without CUDA answer Unavailable and
// the caller accumulates on the host (window_runner.cpp says so in the job notes).
//
// Same labels as the host accumulator: the weight map is the product of the per-axis
// weights the host uses (all 1 for constant blending), and the argmax of a weighted
// sum equals the argmax of the weighted mean, which the host computes. Only the
// summation order differs (float rounding), so exact ties may resolve differently.
#include <cstring>
#include <vector>

#include "accumulator.h"

#if ITKIT_HAVE_CUDA
#include "itkit/cuda_accumulator.h"
#endif

namespace itkit::pipeline {

#if !ITKIT_HAVE_CUDA

Result<std::unique_ptr<Accumulator>> CreateCudaAccumulator(const AccumulatorSpec&, std::shared_ptr<Backend>) {
  return Unavailable("this build has no CUDA backend");
}

#else

namespace {

class CudaAccumulatorAdapter final : public Accumulator {
 public:
  CudaAccumulatorAdapter(const AccumulatorSpec& spec, std::unique_ptr<cuda::SlidingWindowAccumulator> acc)
      : spec_(spec), acc_(std::move(acc)) {}

  std::string device() const override { return "cuda"; }

  Status Add(const Tensor& logits, const std::vector<Zyx>& starts) override {
    std::vector<std::array<int64_t, 3>> origins(starts.begin(), starts.end());
    return acc_->Accumulate(logits, origins);
  }

  Status Finish() override {
    const LabelTarget& t = spec_.target;
    if (t.data == nullptr) return Status::Ok();
    // uint16 targets (more than 255 classes) take int32 argmax rows, narrowed.
    ITKIT_ASSIGN_OR_RETURN(Tensor labels, acc_->ArgMax(t.wide ? DType::kI32 : DType::kU8));
    const Zyx& g = spec_.grid;
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    std::vector<uint16_t> wide_row(t.wide ? static_cast<size_t>(cs[2]) : 0);
    for (int64_t gz = cb[0]; gz < cb[0] + cs[0]; ++gz) {
      for (int64_t gy = cb[1]; gy < cb[1] + cs[1]; ++gy) {
        const int64_t row = (gz * g[1] + gy) * g[2] + cb[2];
        if (t.wide) {
          const int32_t* r = labels.data<int32_t>() + row;
          for (int64_t x = 0; x < cs[2]; ++x) wide_row[static_cast<size_t>(x)] = static_cast<uint16_t>(r[x]);
          WriteLabelRow(t, cb, gz, gy, cb[2], cs[2], wide_row.data());
        } else {
          WriteLabelRow(t, cb, gz, gy, cb[2], cs[2], labels.data<uint8_t>() + row);
        }
      }
    }
    return Status::Ok();
  }

  Status Averaged(float* out) override {
    ITKIT_ASSIGN_OR_RETURN(Tensor avg, acc_->AveragedLogits());
    const Zyx& g = spec_.grid;
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    const float* a = avg.data<float>();
    for (int64_t c = 0; c < spec_.classes; ++c) {
      for (int64_t z = 0; z < cs[0]; ++z) {
        for (int64_t y = 0; y < cs[1]; ++y) {
          const float* row = a + ((c * g[0] + cb[0] + z) * g[1] + cb[1] + y) * g[2] + cb[2];
          std::memcpy(out + ((c * cs[0] + z) * cs[1] + y) * cs[2], row, sizeof(float) * static_cast<size_t>(cs[2]));
        }
      }
    }
    return Status::Ok();
  }

 private:
  AccumulatorSpec spec_;
  std::unique_ptr<cuda::SlidingWindowAccumulator> acc_;
};

}  // namespace

Result<std::unique_ptr<Accumulator>> CreateCudaAccumulator(const AccumulatorSpec& spec,
                                                           std::shared_ptr<Backend> backend) {
  cuda::AccumulatorOptions o;
  o.num_classes = spec.classes;
  o.volume = {spec.grid[0], spec.grid[1], spec.grid[2]};
  o.patch = {spec.patch[0], spec.patch[1], spec.patch[2]};
  // Windows come in non-decreasing z (WindowPlan order): without averages to keep,
  // a patch-deep ring of slices is all the GPU holds.
  o.keep_averages = spec.keep_averages;
  o.label_dtype = spec.target.wide ? DType::kI32 : DType::kU8;
  const size_t pz = static_cast<size_t>(spec.patch[0]), py = static_cast<size_t>(spec.patch[1]),
               px = static_cast<size_t>(spec.patch[2]);
  o.weights.assign(pz * py * px, 1.0f);
  if (spec.gaussian) {
    for (size_t a = 0; a < 3; ++a) {
      if (spec.weights[a].size() != static_cast<size_t>(spec.patch[a]))
        return Internal("CUDA accumulator: gaussian weights of axis ", a, " do not match the patch");
    }
    for (size_t z = 0; z < pz; ++z)
      for (size_t y = 0; y < py; ++y)
        for (size_t x = 0; x < px; ++x)
          o.weights[(z * py + y) * px + x] = spec.weights[0][z] * spec.weights[1][y] * spec.weights[2][x];
  }
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<cuda::SlidingWindowAccumulator> acc, cuda::SlidingWindowAccumulator::Create(o, std::move(backend)));
  return std::unique_ptr<Accumulator>(new CudaAccumulatorAdapter(spec, std::move(acc)));
}

#endif

}  // namespace itkit::pipeline
