// Sliding-window geometry shared by Conv, ConvTranspose and the pools: reads
// kernel_shape/strides/dilations/pads/auto_pad/ceil_mode/output_padding/output_shape
// and resolves the explicit pads and output extent per spatial axis. The shape rules
// and the CPU kernels both call this, so the kernels' pads always agree with the
// planned output shapes.
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/graph.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit::shape_rules {

enum class WindowOp { kConv, kConvTranspose, kPool };

struct WindowGeometry {
  int spatial = 0;  // number of spatial axes (rank - 2)
  std::vector<int64_t> in, out;            // spatial extents
  std::vector<int64_t> kernel, strides, dilations;
  std::vector<int64_t> pad_begin, pad_end;
  std::vector<int64_t> output_padding;     // ConvTranspose only (zeros otherwise)
};

// `x_shape` is [N, C, spatial...]. `weight_kernel` is the kernel extent taken from
// the weights (Conv/ConvTranspose) or empty (pools read the required kernel_shape).
Result<WindowGeometry> ComputeWindowGeometry(const Node& node, WindowOp op, const Shape& x_shape,
                                             const std::vector<int64_t>& weight_kernel);

}  // namespace itkit::shape_rules
