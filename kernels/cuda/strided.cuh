// Kernel-side view of a StridedPlan (layout_utils.h): dims and per-operand strides by
// value in the kernel's parameters, and the index -> offsets decode.
#pragma once

#include "cuda/common.cuh"
#include "cuda/layout_utils.h"

namespace itkit::cuda {

template <int kOps>
struct StridedArgs {
  int rank = 0;
  int64_t dims[kMaxDims] = {};
  int64_t strides[kOps][kMaxDims] = {};
};

template <int kOps>
Result<StridedArgs<kOps>> ToArgs(const StridedPlan& plan) {
  if (plan.dims.size() > static_cast<size_t>(kMaxDims) || plan.strides.size() != static_cast<size_t>(kOps))
    return Internal("strided plan of rank ", plan.dims.size(), " with ", plan.strides.size(), " operands");
  StridedArgs<kOps> a;
  a.rank = static_cast<int>(plan.dims.size());
  for (int d = 0; d < a.rank; ++d) {
    a.dims[d] = plan.dims[d];
    for (int op = 0; op < kOps; ++op) a.strides[op][d] = plan.strides[op][d];
  }
  return a;
}

template <int kOps>
__device__ __forceinline__ void DecodeOffsets(const StridedArgs<kOps>& a, int64_t index, int64_t (&off)[kOps]) {
#pragma unroll
  for (int op = 0; op < kOps; ++op) off[op] = 0;
  for (int d = a.rank - 1; d >= 0; --d) {
    const int64_t dim = a.dims[d];
    const int64_t i = index % dim;
    index /= dim;
#pragma unroll
    for (int op = 0; op < kOps; ++op) off[op] += i * a.strides[op][d];
  }
}

}  // namespace itkit::cuda
