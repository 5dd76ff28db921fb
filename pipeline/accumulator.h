// Where window logits are summed and turned into labels: an interface so that a CUDA
// accumulator (window outputs stay on the GPU) can replace the host one without
// touching the window loop.
#pragma once

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/tensor.h"
#include "itkit/thread_pool.h"
#include "sliding_window.h"

namespace itkit::pipeline {

// Where finished labels go: crop voxel (x, y, z) is written to
// data[offset + x * strides[0] + y * strides[1] + z * strides[2]], which lets the
// argmax write straight into the input's grid (a reorientation is such a map).
struct LabelTarget {
  void* data = nullptr;
  bool wide = false;  // uint16_t labels (more than 255 classes), else uint8_t
  int64_t offset = 0;
  std::array<int64_t, 3> strides{0, 0, 0};  // x, y, z
};

// n labels of grid row (gz, gy), from grid column gx on, into the target (whose
// coordinates are the grid's minus crop_begin).
template <typename T>
void WriteLabelRow(const LabelTarget& t, const Zyx& crop_begin, int64_t gz, int64_t gy, int64_t gx, int64_t n,
                   const T* labels) {
  T* d = static_cast<T*>(t.data) + t.offset + (gx - crop_begin[2]) * t.strides[0] +
         (gy - crop_begin[1]) * t.strides[1] + (gz - crop_begin[0]) * t.strides[2];
  if (t.strides[0] == 1) {
    std::memcpy(d, labels, static_cast<size_t>(n) * sizeof(T));
  } else {
    for (int64_t x = 0; x < n; ++x) d[x * t.strides[0]] = labels[x];
  }
}

struct AccumulatorSpec {
  int classes = 0;
  Zyx grid{};         // the padded volume windows live in
  Zyx patch{};
  std::array<std::vector<int64_t>, 3> starts;  // window starts per axis (WindowPlan::starts)
  Zyx crop_begin{};   // the region results are read from (the unpadded volume)
  Zyx crop_size{};
  bool gaussian = false;
  std::array<std::vector<float>, 3> weights;   // per axis, patch long (gaussian only)
  std::array<std::vector<float>, 3> coverage;  // per axis, grid long: AxisCoverage()
  // Averaged() needs every slice kept to the end; otherwise slices are turned into
  // labels as soon as no later window can reach them (windows arrive in
  // non-decreasing z), and only a patch-deep ring of slices is held.
  bool keep_averages = false;
  LabelTarget target;
};

class Accumulator {
 public:
  virtual ~Accumulator() = default;
  virtual std::string device() const = 0;
  // Adds windows' logits, shape (n, classes, patch), at starts[i] (grid coordinates),
  // in the window order of WindowPlan (z non-decreasing). Windows may overlap.
  virtual Status Add(const Tensor& logits, const std::vector<Zyx>& starts) = 0;
  // Writes every remaining label (argmax over classes of the summed logits; ties go
  // to the lowest class, as torch.argmax does) to the target.
  virtual Status Finish() = 0;
  // Averaged logits of the crop, (classes, z, y, x) on the host; keep_averages only.
  virtual Status Averaged(float* out) = 0;
};

// Host memory, work split over `pool`.
Result<std::unique_ptr<Accumulator>> CreateHostAccumulator(const AccumulatorSpec& spec, ThreadPool* pool);
// GPU memory (cuda_accumulator_adapter.cpp); Unavailable in builds without CUDA or
// when no GPU can be used, OutOfMemory when the sums do not fit (callers fall back
// to the host and say so).
// `backend`: the network's CUDA backend, shared (nullptr: one of its own).
Result<std::unique_ptr<Accumulator>> CreateCudaAccumulator(const AccumulatorSpec& spec,
                                                           std::shared_ptr<Backend> backend);

}  // namespace itkit::pipeline
