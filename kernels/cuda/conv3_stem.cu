// Our 3x3x3 stem convolution (few input channels -> 16 or 32, stride 1, padding 1) on
// f16 NDHWC data with f32 sums: Y = act(conv(X, W) + B). The walk and the arithmetic
// are conv3_stem.h's (run on the host by the tests); here: the filter staged in shared
// memory as f32 (every thread of a warp reads the same value: a broadcast), a few items
// per thread, and the store of each voxel's channels in 16-byte packs.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cuda/conv3_stem.h"
#include "cuda/own_kernels.cuh"

namespace itkit::cuda {
namespace {

// Two values as f16 in one 32-bit word, the first in the low half (the lower address).
__device__ __forceinline__ uint32_t PairBits(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  uint32_t bits;
  memcpy(&bits, &h, sizeof(bits));
  return bits;
}

// w: packed [Cout][tap][Cin] f16 (the convolution's NDHWC filter layout); bias [Cout] f16 or null.
// kPlain: no activation (a stem before a norm), so the store has no per-value switch.
// Two blocks per SM: every instance fits 128 registers without spilling.
template <int CIN, int COUT, bool kPlain>
__global__ void __launch_bounds__(kStemThreads, 1) Conv3StemKernel(StemShape s, const __half* __restrict__ x,
                                                                const __half* __restrict__ w,
                                                                const __half* __restrict__ bias,
                                                                __half* __restrict__ y, Act act, float alpha) {
  __shared__ __align__(16) float filter[kStemTaps * CIN * COUT];  // [tap][ci][co]: co fastest
  __shared__ float shift[COUT];
  // Unrolled (the trip count is a constant), so all of a thread's loads are in flight at once.
  constexpr int kFilter = kStemTaps * CIN * COUT;
#pragma unroll
  for (int k = 0; k < (kFilter + kStemThreads - 1) / kStemThreads; ++k) {
    const int i = k * kStemThreads + static_cast<int>(threadIdx.x);
    if (i >= kFilter) break;
    const int co = i % COUT, ci = (i / COUT) % CIN, tap = i / (COUT * CIN);
    filter[i] = __half2float(w[(co * kStemTaps + tap) * CIN + ci]);
  }
  for (int co = threadIdx.x; co < COUT; co += blockDim.x) shift[co] = bias ? __half2float(bias[co]) : 0.0f;
  __syncthreads();
  const auto load = [x](int64_t offset) { return __half2float(x[offset]); };
  // 16-byte aligned, so that four neighbouring output channels are one shared load.
  const auto* staged = static_cast<const float*>(__builtin_assume_aligned(filter, 16));
  const auto weight = [staged](int tap, int ci, int co) { return staged[(tap * CIN + ci) * COUT + co]; };
  // A grid-stride loop (a few items per thread, so each block stages the filter once
  // for many): the empty asm with a memory clobber at the top of each item keeps the
  // compiler from hoisting the filter's shared-memory reads out of the loop into
  // registers (864 of them for 1 -> 32 channels: spills).
  const int64_t items = StemItems(s);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    asm volatile("" ::: "memory");
    const StemItem it = StemItemOf<uint32_t>(s, i);  // item numbers fit (checked at launch)
    float acc[kStemVoxels][COUT];
    StemAccumulate<CIN, COUT>(s, it, load, weight, acc);
#pragma unroll
    for (int v = 0; v < kStemVoxels; ++v) {
      if (it.x0 + v >= s.w) break;
      auto* dst = reinterpret_cast<uint4*>(y + StemOffset(s, it.n, it.z, it.y, it.x0 + v, COUT, 0));
#pragma unroll
      for (int pack = 0; pack < COUT / 8; ++pack) {
        uint32_t bits[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int co = pack * 8 + 2 * k;
          const float v0 = acc[v][co] + shift[co], v1 = acc[v][co + 1] + shift[co + 1];
          bits[k] = kPlain ? PairBits(v0, v1) : PairBits(ApplyAct(v0, act, alpha), ApplyAct(v1, act, alpha));
        }
        dst[pack] = make_uint4(bits[0], bits[1], bits[2], bits[3]);
      }
    }
  }
}

template <int CIN>
Status LaunchCout(const CudaContext& ctx, const StemShape& s, const __half* x, const __half* w, const __half* bias,
                  __half* y, Act act, float alpha) {
  // About 8 items per thread at 128^3 x 4 (each block stages the filter once), at
  // least 8 blocks per SM.
  const int64_t blocks = (StemItems(s) + kStemThreads * 8 - 1) / (kStemThreads * 8);
  const auto grid = static_cast<unsigned>(std::clamp<int64_t>(blocks, int64_t{ctx.num_sms} * 8, 0x7fffffff));
  const bool plain = act == Act::kNone;
  if (s.cout == 16 && plain) {
    Conv3StemKernel<CIN, 16, true><<<grid, kStemThreads, 0, ctx.stream>>>(s, x, w, bias, y, act, alpha);
  } else if (s.cout == 16) {
    Conv3StemKernel<CIN, 16, false><<<grid, kStemThreads, 0, ctx.stream>>>(s, x, w, bias, y, act, alpha);
  } else if (plain) {
    Conv3StemKernel<CIN, 32, true><<<grid, kStemThreads, 0, ctx.stream>>>(s, x, w, bias, y, act, alpha);
  } else {
    Conv3StemKernel<CIN, 32, false><<<grid, kStemThreads, 0, ctx.stream>>>(s, x, w, bias, y, act, alpha);
  }
  ITKIT_CUDA_CHECK_LAUNCH("Conv3StemKernel");
  return Status::Ok();
}

}  // namespace

bool Conv3StemTakes(int64_t cin, int64_t cout) { return cin >= 1 && cin <= kStemMaxCin && (cout == 16 || cout == 32); }

Status LaunchConv3Stem(const CudaContext& ctx, const StemShape& shape, const __half* x, const __half* w,
                       const __half* bias, __half* y, Act act, float alpha) {
  if (!Conv3StemTakes(shape.cin, shape.cout))
    return InvalidArgument("stem convolution: ", shape.cin, " -> ", shape.cout, " channels");
  if (shape.n <= 0 || shape.d <= 0 || shape.h <= 0 || shape.w <= 0) return InvalidArgument("stem convolution: empty volume");
  if (reinterpret_cast<uintptr_t>(y) % 16 != 0) return Internal("stem convolution: Y not 16-byte aligned");
  // 32-bit item numbers (the backend's tensors stay under 2^31 elements, so they do).
  if (StemItems(shape) > 0xffffffffLL) return Unsupported("stem convolution: too many voxels");
  switch (shape.cin) {
    case 1: return LaunchCout<1>(ctx, shape, x, w, bias, y, act, alpha);
    case 2: return LaunchCout<2>(ctx, shape, x, w, bias, y, act, alpha);
    case 3: return LaunchCout<3>(ctx, shape, x, w, bias, y, act, alpha);
    default: return LaunchCout<4>(ctx, shape, x, w, bias, y, act, alpha);
  }
}

}  // namespace itkit::cuda
