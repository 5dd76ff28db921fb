// The resize family on the CPU: Resize (opsets 10-17) and Upsample (7-9, run as
// Resize with asymmetric coordinates). resize_reference.cpp evaluates every output
// element straight from the ONNX definition; resize.cpp precomputes per-axis taps
// and runs rows in parallel.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "itkit/backend.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

struct ResizeParams {
  enum class Mode { kNearest, kLinear, kCubic };
  enum class Coord { kHalfPixel, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfHalfPixelForNn, kTfCropAndResize };
  enum class Nearest { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };
  Mode mode = Mode::kNearest;
  Coord coord = Coord::kHalfPixel;
  Nearest nearest = Nearest::kRoundPreferFloor;  // kSimple: floor, ceil when shrinking (Resize-10)
  double cubic_a = -0.75;
  bool exclude_outside = false;
  float extrapolation_value = 0.0f;
  Shape in, out;
  std::vector<double> scales;               // per axis: given, or out/in when sizes were given
  std::vector<double> roi_start, roi_end;  // tf_crop_and_resize only
  size_t element_size = 4;                  // nearest moves any dtype's elements
};

// Up to 4 input positions and weights along one axis for one output coordinate.
struct AxisTaps {
  int count = 0;
  int64_t index[4] = {0, 0, 0, 0};  // clamped into [0, in)
  double weight[4] = {0, 0, 0, 0};
  bool outside = false;  // tf_crop_and_resize: sample lies outside the input
};

// The ONNX definition of one axis' sampling (shared by both implementations).
AxisTaps ComputeAxisTaps(const ResizeParams& p, size_t axis, int64_t out_index);

Result<ResizeParams> MakeResizeParams(const NodeSignature& sig);
// Fills roi_start/roi_end from Resize's roi input ([starts..., ends...]).
void ReadRoi(const Tensor& roi, ResizeParams* p);

void ResizeReference(const ResizeParams& p, const void* x, void* y);
void ResizeFast(const ResizeParams& p, const void* x, void* y, ThreadPool* pool);

enum class ResizeImpl { kAuto, kReference };
Result<std::unique_ptr<OpKernel>> CreateResizeKernel(const NodeSignature& sig, ResizeImpl impl);

}  // namespace itkit::cpu
