// Host-side index planning for the strided CUDA kernels (broadcasting binaries,
// Transpose, Slice, Concat, Pad): operand strides in a common iteration space, with
// adjacent axes merged where every operand allows it, so most ops reach the kernels
// as 1-3 dims. Plain C++ (tested in tests/ops without a GPU).
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/tensor.h"

namespace itkit::cuda {

struct StridedPlan {
  std::vector<int64_t> dims;                   // iteration space, row-major
  std::vector<std::vector<int64_t>> strides;   // per operand, in elements (0 = broadcast)
};

// Row-major element strides of `in` read along `out` (numpy broadcasting, right
// aligned): 0 where `in` has size 1 (or no axis) and `out` does not.
std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out);

// Merges axis i into i+1 where every operand has stride[i] == stride[i+1] * dims[i+1],
// and drops size-1 axes. Never returns an empty dims (a scalar becomes {1}).
StridedPlan Collapse(StridedPlan plan);

// Offset of element `index` of the iteration space for operand `op` (reference for tests).
int64_t OffsetOf(const StridedPlan& plan, size_t op, int64_t index);

}  // namespace itkit::cuda
