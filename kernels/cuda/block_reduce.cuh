// Warp and block reductions with any associative combine (a sum, NaN-keeping max, ...),
// the result returned to every thread: LayerNorm's statistics and the Reduce* family.
#pragma once

#include <cuda_runtime.h>

namespace itkit::cuda {

template <typename V, typename Combine>
__device__ __forceinline__ V WarpReduce(V v, Combine combine) {
  for (int offset = 16; offset > 0; offset >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block must call it; `identity` stands in for warps the block
// does not have.
template <typename V, typename Combine>
__device__ V BlockReduce(V v, Combine combine, V identity) {
  __shared__ V warp_results[32];
  v = WarpReduce(v, combine);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  v = WarpReduce(lane < warps ? warp_results[lane] : identity, combine);
  __syncthreads();  // warp_results is reused by the next call
  return v;
}

}  // namespace itkit::cuda
