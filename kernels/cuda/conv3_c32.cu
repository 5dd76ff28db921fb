// Our 3x3x3 convolution, 32 -> 32 channels, stride 1, padding 1, on f16 NDHWC data
// with f32 accumulation: Y = act(conv(X, W) + B + Z). The walk and every index are in
// conv3_tiles.h (and emulated on the host by tests/ops/test_cuda_conv3_host.cpp).
//
// Why our own: the U-Net's 128^3 level runs four of these per window (the decoder's
// 64 -> 32 one split into two over the skip concat), 45 % of the window's time, and
// cuDNN's kernels reach 215 TFLOP/s on them on an H100. With only 32 output channels
// the GEMM is narrow: what limits it is feeding the tensor cores the input, which
// cuDNN's implicit GEMM re-reads once per tap. This kernel reads each input plane
// from global memory once per block (a ring of halo planes in shared memory), keeps the
// whole filter in shared memory, and feeds each 16 mma.m16n8k16 with 6 ldmatrix.x4
// (3 KB): ~75 % of shared-memory bandwidth if mma.sync runs at half of Hopper's dense
// FP16 peak, the bound (~2/3 of that peak) if it ran at the full peak. Whether it wins
// is measured per shape at plan time against cuDNN (own_kernels.cuh), never assumed.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "cuda/conv3_tiles.h"
#include "cuda/own_kernels.cuh"

namespace itkit::cuda {
namespace {

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The PTX below, or under the host emulator (tests/cuda_emu) its emulation of the same
// instructions, so that this kernel's every line runs in CI without a GPU.
#if defined(ITKIT_CUDA_EMU)
__device__ __forceinline__ void CopyAsync16(uint32_t dst, const void* src, bool valid) {
  ::itkit_emu::CopyAsyncIssue(::itkit_emu::SharedPointer(dst, 16), src, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void CopyAsyncCommit() { ::itkit_emu::CopyAsyncCommit(); }
__device__ __forceinline__ void CopyAsyncWaitAll() { ::itkit_emu::CopyAsyncWait(0); }
__device__ __forceinline__ void LoadMatrixX4(uint32_t (&r)[4], uint32_t addr) { ::itkit_emu::LdMatrixX4(r, addr); }
__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::itkit_emu::MmaM16N8K16(c, a, b0, b1);
}
__device__ __forceinline__ void PrefetchL2(const void*) {}
#else
// 16 bytes global -> shared, bypassing L1; zero-filled when !valid (then nothing is read).
__device__ __forceinline__ void CopyAsync16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void CopyAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void CopyAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void LoadMatrixX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a * b for one 16x8x16 tile (f16 inputs, f32 accumulators).
__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void PrefetchL2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }
#endif

// This thread's copies of input plane `plane`'s halo into its ring slot (zeros outside
// the volume), issued in parts: Issue(k) starts the next k of them (all of them: -1).
class PlaneLoad {
 public:
  __device__ PlaneLoad(const Conv3Shape& s, const Conv3Block& b, int64_t plane, uint32_t slot_base)
      : s_(s), b_(b), base_(Conv3PlaneBase(s, b, plane)), inside_(plane >= 0 && plane < s.d), slot_(slot_base),
        walk_(static_cast<int>(threadIdx.x)) {}
  __device__ __forceinline__ void Issue(const __half* __restrict__ x, int count = -1) {
    for (; count != 0 && !walk_.done(); --count, walk_.Next()) {
      uint32_t offset = 0;
      const int64_t src = walk_.Source(s_, b_, base_, inside_, &offset);
      CopyAsync16(slot_ + offset, src >= 0 ? x + src : x, src >= 0);
    }
  }

 private:
  const Conv3Shape& s_;
  const Conv3Block& b_;
  int64_t base_;
  bool inside_;
  uint32_t slot_;
  Conv3HaloWalker walk_;
};

// A thread's share of a halo plane: 2640 chunks over 256 threads, 10 or 11 each.
constexpr int kConv3CopiesPerThread = (kConv3PlaneVoxels * kConv3ChunksPerRow + kConv3Threads - 1) / kConv3Threads;

// One output pair: act(sum + bias + z) as f16, the first channel at the lower address.
template <Act kAct>
__device__ __forceinline__ void StorePair(__half* at, float sum0, float sum1, const float (&bias)[2], float2 z,
                                          float alpha) {
  *reinterpret_cast<__half2*>(at) =
      __floats2half2_rn(ApplyAct(sum0 + bias[0] + z.x, kAct, alpha), ApplyAct(sum1 + bias[1] + z.y, kAct, alpha));
}

// The activation is a template parameter: one switch per launch, not one per value.
template <Act kAct>
__global__ void __launch_bounds__(kConv3Threads, 1)
    Conv3C32Kernel(Conv3Shape s, Conv3Grid grid, const __half* __restrict__ x, const __half* __restrict__ w,
                   const __half* __restrict__ bias, const __half* z, __half* y, float alpha) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(ITKIT_CUDA_EMU)  // cp.async, ldmatrix, mma
  extern __shared__ __align__(128) uint8_t smem[];
  const Conv3Block b = Conv3BlockOf(s, grid, blockIdx.x);
  if (b.d_begin >= b.d_end) return;  // the whole block alike
  const uint32_t w_base = SharedAddress(smem);
  const uint32_t planes_base = w_base + kConv3WeightBytes;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;

  for (int e = threadIdx.x; e < kConv3Taps * kConv3Channels * kConv3ChunksPerRow; e += kConv3Threads) {
    uint32_t offset = 0;
    const int64_t src = Conv3WeightSource(e, &offset);
    CopyAsync16(w_base + offset, w + src, true);
  }
  for (int64_t p = b.d_begin - 1; p <= b.d_begin + 1; ++p)
    PlaneLoad(s, b, p, planes_base + Conv3SlotOf(p, b.d_begin) * kConv3PlaneBytes).Issue(x);
  CopyAsyncCommit();

  // Per lane: each output channel pair's bias (the same for every voxel it holds).
  float bias_pair[4][2];
  for (int nt = 0; nt < 4; ++nt)
    for (int i = 0; i < 2; ++i) {
      int voxel = 0, cout = 0;
      Conv3AccPosition(0, nt, i, lane, &voxel, &cout);
      bias_pair[nt][i] = bias ? __half2float(bias[cout]) : 0.0f;
    }
  const int64_t h = b.h0 + warp;

  for (int64_t d = b.d_begin; d < b.d_end; ++d) {
    // Plane d+1 has landed (this thread's copies), every thread's copies are visible,
    // and every warp is done with plane d-2, whose slot plane d+2 now takes.
    CopyAsyncWaitAll();
    __syncthreads();
    // Plane d+2 (into plane d-2's slot, which no warp reads any more) is issued a third
    // per kd step below, between the tensor-core work, rather than all at once here,
    // where every warp would issue its copies while the tensor cores sit idle.
    PlaneLoad next(s, b, d + 2, planes_base + Conv3SlotOf(d + 2, b.d_begin) * kConv3PlaneBytes);
    const bool load_next = d + 1 < b.d_end;
    // Z's row for this plane towards L2 while the tensor cores work: its reads in the
    // store below then wait on L2, not on DRAM (4 KB per warp: one 128-byte line per lane).
    if (z && h < s.h) {
      const int64_t row = ((b.n * s.d + d) * s.h + h) * s.w + b.w0;
      const int64_t voxels = s.w - b.w0 < kConv3TileW ? s.w - b.w0 : kConv3TileW;
      if (lane * 2 < voxels) PrefetchL2(z + (row + lane * 2) * kConv3Channels);
    }

    float acc[4][4][4];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;

#pragma unroll 1
    for (int kd = 0; kd < 3; ++kd) {
      if (load_next) next.Issue(x, kd < 2 ? (kConv3CopiesPerThread + 2) / 3 : -1);
      const uint32_t slot_base = planes_base + Conv3SlotOf(d - 1 + kd, b.d_begin) * kConv3PlaneBytes;
#pragma unroll
      for (int kh = 0; kh < 3; ++kh)
#pragma unroll
        for (int kw = 0; kw < 3; ++kw) {
          const int tap = (kd * 3 + kh) * 3 + kw;
#pragma unroll
          for (int kk = 0; kk < 2; ++kk) {
            uint32_t bf[2][4];
            LoadMatrixX4(bf[0], w_base + Conv3BLaneOffset(tap, 0, kk, lane));
            LoadMatrixX4(bf[1], w_base + Conv3BLaneOffset(tap, 1, kk, lane));
#pragma unroll
            for (int mt = 0; mt < 4; ++mt) {
              uint32_t af[4];
              LoadMatrixX4(af, slot_base + Conv3ALaneOffset(warp, mt, kh, kw, kk, lane));
#pragma unroll
              for (int nt = 0; nt < 4; ++nt) Mma16816(acc[mt][nt], af, bf[nt >> 1][(nt & 1) * 2], bf[nt >> 1][(nt & 1) * 2 + 1]);
            }
          }
        }
    }
    CopyAsyncCommit();  // plane d+2's copies (an empty group on the last plane)

    if (h >= s.h) continue;
    if (Conv3FullWidth(s, b)) {
      // Every pair inside: one row base, and the row tile's 8 Z pairs read together
      // without a bound check each (then each pair is read, then written, by this
      // thread alone, so Z may be Y).
      const int64_t row = Conv3RowBase(s, b, d, h);
      __half* yr = y + row;
      const __half* zr = z ? z + row : nullptr;
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        float2 zv[2][4];
        if (zr) {
#pragma unroll
          for (int half_row = 0; half_row < 2; ++half_row)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt)
              zv[half_row][nt] =
                  __half22float2(*reinterpret_cast<const __half2*>(zr + Conv3FullTilePair(mt, nt, half_row, lane)));
        } else {
#pragma unroll
          for (int half_row = 0; half_row < 2; ++half_row)
#pragma unroll
            for (int nt = 0; nt < 4; ++nt) zv[half_row][nt] = make_float2(0.0f, 0.0f);
        }
#pragma unroll
        for (int half_row = 0; half_row < 2; ++half_row)
#pragma unroll
          for (int nt = 0; nt < 4; ++nt)
            StorePair<kAct>(yr + Conv3FullTilePair(mt, nt, half_row, lane), acc[mt][nt][half_row * 2],
                            acc[mt][nt][half_row * 2 + 1], bias_pair[nt], zv[half_row][nt], alpha);
      }
      continue;
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      // A tile cut short by the volume's width. All 8 of the row tile's Z pairs are read
      // before any of its Y pairs is written (Z may be Y: each element is read, then
      // written, by this thread alone), so the reads overlap instead of each waiting
      // behind the previous store.
      int64_t idx[2][4];
      float2 zv[2][4];
#pragma unroll
      for (int half_row = 0; half_row < 2; ++half_row)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) {
          idx[half_row][nt] = Conv3OutputPair(s, b, d, warp, mt, nt, half_row, lane);
          zv[half_row][nt] = z && idx[half_row][nt] >= 0
                                 ? __half22float2(*reinterpret_cast<const __half2*>(z + idx[half_row][nt]))
                                 : make_float2(0.0f, 0.0f);
        }
#pragma unroll
      for (int half_row = 0; half_row < 2; ++half_row)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
          if (idx[half_row][nt] >= 0)
            StorePair<kAct>(y + idx[half_row][nt], acc[mt][nt][half_row * 2], acc[mt][nt][half_row * 2 + 1],
                            bias_pair[nt], zv[half_row][nt], alpha);
    }
  }
  CopyAsyncWaitAll();  // no copy may outlive the block
#endif
}

template <Act kAct>
Status SetSharedMemory() {
  ITKIT_CUDA_CHECK(
      cudaFuncSetAttribute(Conv3C32Kernel<kAct>, cudaFuncAttributeMaxDynamicSharedMemorySize, kConv3SmemBytes));
  return Status::Ok();
}

// Calls fn.template operator()<kAct>() for the runtime `act`.
template <typename Fn>
Status DispatchAct(Act act, Fn&& fn) {
  switch (act) {
    case Act::kNone: return fn.template operator()<Act::kNone>();
    case Act::kRelu: return fn.template operator()<Act::kRelu>();
    case Act::kLeakyRelu: return fn.template operator()<Act::kLeakyRelu>();
    case Act::kSigmoid: return fn.template operator()<Act::kSigmoid>();
    case Act::kTanh: return fn.template operator()<Act::kTanh>();
    case Act::kGelu: return fn.template operator()<Act::kGelu>();
  }
  return InvalidArgument("3x3x3 convolution: unknown activation ", static_cast<int>(act));
}

}  // namespace

Status PrepareConv3C32(const CudaContext& ctx) {
  int device = 0, optin = 0;
  ITKIT_CUDA_CHECK(cudaGetDevice(&device));
  ITKIT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (optin < kConv3SmemBytes)
    return Unsupported("our 3x3x3 convolution needs ", kConv3SmemBytes, " bytes of shared memory per block, the GPU has ",
                       optin);
  for (Act act : {Act::kNone, Act::kRelu, Act::kLeakyRelu, Act::kSigmoid, Act::kTanh, Act::kGelu})
    ITKIT_RETURN_IF_ERROR(DispatchAct(act, [&]<Act kAct>() -> Status { return SetSharedMemory<kAct>(); }));
  return Status::Ok();
}

Status LaunchConv3C32(const CudaContext& ctx, const Conv3Shape& shape, const __half* x, const __half* w,
                      const __half* bias, const __half* z, __half* y, Act act, float alpha) {
  if (shape.n <= 0 || shape.d <= 0 || shape.h <= 0 || shape.w <= 0)
    return InvalidArgument("3x3x3 convolution: empty volume");
  // 16-byte copies of X and W; 4-byte pairs of Y and Z.
  if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) % 16 != 0 ||
      (reinterpret_cast<uintptr_t>(y) | reinterpret_cast<uintptr_t>(z)) % 4 != 0)
    return Internal("3x3x3 convolution: X or W not 16-byte aligned, or Y or Z not 4-byte aligned");
  const Conv3Grid grid = Conv3MakeGrid(shape, ctx.num_sms);
  if (grid.blocks() > 0x7fffffff) return Unsupported("3x3x3 convolution: too many blocks");
  return DispatchAct(act, [&]<Act kAct>() -> Status {
    Conv3C32Kernel<kAct><<<static_cast<unsigned>(grid.blocks()), kConv3Threads, kConv3SmemBytes, ctx.stream>>>(
        shape, grid, x, w, bias, z, y, alpha);
    ITKIT_CUDA_CHECK_LAUNCH("Conv3C32Kernel");
    return Status::Ok();
  });
}

}  // namespace itkit::cuda
