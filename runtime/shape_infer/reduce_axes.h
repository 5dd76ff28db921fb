// The axes a Reduce* node reduces, shared by its shape rule and the CPU and CUDA
// kernels so they agree: `axes` in any order, negative from the end, each at most
// once; none given reduces every axis, or none at all with noop_with_empty_axes.
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/graph.h"
#include "itkit/shape_inference.h"
#include "itkit/status.h"

namespace itkit::shape_rules {

inline Result<std::vector<bool>> ReducedAxesMask(int rank, const std::vector<int64_t>& axes, bool noop,
                                                 const Node& node) {
  std::vector<bool> reduced(static_cast<size_t>(rank), axes.empty() && !noop);
  for (int64_t a : axes) {
    ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(a, rank, node));
    if (reduced[static_cast<size_t>(axis)]) return InvalidArgument(node.Describe(), ": axis ", a, " is listed twice");
    reduced[static_cast<size_t>(axis)] = true;
  }
  return reduced;
}

}  // namespace itkit::shape_rules
