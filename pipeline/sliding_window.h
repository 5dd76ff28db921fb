// Sliding-window geometry, ITKIT's algorithm: windows of `patch` every `stride` per
// axis, the last one moved back flush with the border; a volume smaller than the
// patch is edge-padded symmetrically first. Arrays here are (z, y, x).
#pragma once

#include <array>
#include <vector>

#include "itkit/status.h"
#include "itkit/thread_pool.h"

namespace itkit::pipeline {

using Zyx = std::array<int64_t, 3>;

// Window starts along one axis of `size` >= patch: max(size - patch + stride - 1, 0)
// // stride + 1 positions, start i*stride, end min(start + patch, size), then
// start = max(end - patch, 0).
std::vector<int64_t> WindowStarts(int64_t size, int64_t patch, int64_t stride);

struct WindowPlan {
  Zyx size{};                 // the volume
  Zyx pad_before{}, pad_after{};
  Zyx padded{};               // size + padding (>= patch on every axis)
  Zyx patch{}, stride{};
  std::array<std::vector<int64_t>, 3> starts;  // per axis, in the padded volume
  int64_t count() const {
    return static_cast<int64_t>(starts[0].size() * starts[1].size() * starts[2].size());
  }
  bool padding() const { return padded != size; }
  // Window `index` in ITKIT's order (z outermost, x innermost).
  Zyx Start(int64_t index) const;
};

// Errors on a non-positive patch/stride or a stride larger than the patch (which
// would leave voxels no window covers).
Result<WindowPlan> PlanWindows(const Zyx& size, const Zyx& patch, const Zyx& stride);

// nnU-Net's / MONAI's importance weights along one axis: a Gaussian with
// sigma = patch / 8 centred on index patch // 2, scaled to a maximum of 1. The 3D
// map is the product of the three axes.
std::vector<float> GaussianWeights(int64_t patch);

// Per position of an axis of `size`, the sum over windows covering it of the
// window's weight there (the number of covering windows when `weights` is empty).
// The 3D normaliser is the product of the three, because the windows form a grid.
std::vector<float> AxisCoverage(const std::vector<int64_t>& starts, int64_t size, int64_t patch,
                                const std::vector<float>& weights);

// (channels, size) → (channels, padded) by edge replication (torch's 'replicate').
void PadReplicate(const float* src, int channels, const WindowPlan& plan, float* dst, ThreadPool* pool);

// Copies window `start` of every channel of a (channels, dims) volume into
// dst (channels, patch).
void ExtractWindow(const float* volume, int channels, const Zyx& dims, const Zyx& start,
                   const Zyx& patch, float* dst);

}  // namespace itkit::pipeline
