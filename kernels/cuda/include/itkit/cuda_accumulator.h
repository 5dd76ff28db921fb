// Sliding-window accumulation on the GPU, for the segmentation pipeline: window logits
// are added into a whole-volume sum with a per-voxel window weight (Gaussian or
// constant blending), then an argmax over classes gives the label volume. Keeping the
// sum on the GPU avoids a [classes x volume] float buffer on the host and the argmax
// pass over it on the CPU.
//
// Use (only in builds with ITKIT_HAVE_CUDA; guard with `#if ITKIT_HAVE_CUDA`):
//
//   cuda::AccumulatorOptions o;
//   o.num_classes = 3; o.volume = {D, H, W}; o.patch = {128, 128, 128};
//   auto acc = cuda::SlidingWindowAccumulator::Create(o, cuda_backend);   // or nullptr
//   for each batch of windows:
//     logits = session.Run(...)            // [B, classes, pz, py, px], host or CUDA
//     acc->Accumulate(logits, origins);   // origins[b] = (z, y, x) of window b's corner
//   auto labels = acc->ArgMax(DType::kU8); // host [D, H, W]
//
// Windows may overlap each other (also within one batch) and may reach outside the
// volume: only their part inside [0, volume) is added. Voxels no window covered get
// label 0 and averaged logits 0.
//
// Memory: with keep_averages (the default) the sums of the whole volume and a weight
// sum per voxel are kept: (classes + 1) x D x H x W floats, windows in any order. With
// keep_averages = false only labels come out: windows must arrive in non-decreasing z,
// and only a patch-deep ring of z slices is held, each slice turned into labels as soon
// as a window starts above it: classes x patch_z x H x W floats. For a 320x512x512 CT,
// 3 classes and 128-deep windows that is 384 MiB instead of 1280 MiB.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit::cuda {

struct AccumulatorOptions {
  int device = 0;                    // ignored when a CUDA backend is given to Create
  int64_t num_classes = 0;
  std::array<int64_t, 3> volume{};   // (z, y, x) = (D, H, W) of the (padded) volume
  std::array<int64_t, 3> patch{};    // (z, y, x) of one window
  std::string blend = "gaussian";    // "gaussian" | "constant"
  double sigma_scale = 0.125;        // gaussian: sigma = patch * sigma_scale per axis
  // Explicit window weights [pz * py * px] (z slowest), overriding `blend`, so the
  // pipeline can give the exact map its CPU path uses. Must be > 0 everywhere.
  std::vector<float> weights;
  // false: labels only, from a ring of slices (above); AveragedLogits() unavailable.
  bool keep_averages = true;
  // Labels only: the labels' type (ArgMax must ask for it), kU8 (num_classes <= 256),
  // kI32 or kI64. With keep_averages ArgMax takes any of them.
  DType label_dtype = DType::kU8;
};

class SlidingWindowAccumulator {
 public:
  // With `backend` (from CreateCudaBackend), the accumulator shares its device and
  // stream, so device logits from that backend need no synchronisation. nullptr: its
  // own stream on options.device. Unavailable when CUDA cannot be used.
  static Result<std::unique_ptr<SlidingWindowAccumulator>> Create(const AccumulatorOptions& options,
                                                                   std::shared_ptr<Backend> backend = nullptr);
  virtual ~SlidingWindowAccumulator() = default;

  // logits: [B, num_classes, pz, py, px] (or [num_classes, pz, py, px] for B = 1), f32 or
  // f16, in host memory or on this accumulator's GPU. origins.size() == B.
  virtual Status Accumulate(const Tensor& logits, const std::vector<std::array<int64_t, 3>>& origins) = 0;

  // Label volume [D, H, W] on the host: argmax over classes of the weighted sum (ties
  // go to the lower class). Labels only: of AccumulatorOptions::label_dtype, and it
  // ends the volume (Accumulate is refused until Reset).
  virtual Result<Tensor> ArgMax(DType label_dtype = DType::kU8) = 0;

  // Weighted mean logits [num_classes, D, H, W] (f32, host), e.g. to write
  // probabilities; keep_averages only.
  virtual Result<Tensor> AveragedLogits() = 0;

  // Zeroes the sums for the next volume of the same size.
  virtual Status Reset() = 0;

  // GPU memory held (sums, weight sums, weights, labels, staging).
  virtual size_t device_bytes() const = 0;
};

// The default window weight map (what `blend` selects), [pz * py * px] z slowest:
// "constant" = all 1; "gaussian" = separable Gaussian, max 1.
std::vector<float> DefaultWindowWeights(const std::array<int64_t, 3>& patch, const std::string& blend,
                                        double sigma_scale);

}  // namespace itkit::cuda
