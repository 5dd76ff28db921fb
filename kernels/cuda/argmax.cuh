// Arg-max/min along the middle axis of [outer, len, inner] on the GPU: the ONNX
// ArgMax/ArgMin kernels and the sliding-window accumulator's label pass share it.
#pragma once

#include "cuda/common.cuh"

namespace itkit::cuda {

// out[o * inner + i] = index k in [0, len) of the largest (is_min: smallest) x[o][k][i];
// ties go to the first index, or the last with select_last. x: f32/f16; out: u8, i32
// or i64. Runs on ctx.stream.
Status LaunchArgReduce(const CudaContext& ctx, const void* x, DType x_dtype, void* out, DType out_dtype,
                       int64_t outer, int64_t len, int64_t inner, bool is_min, bool select_last);

}  // namespace itkit::cuda
