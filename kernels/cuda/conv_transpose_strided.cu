// ConvTranspose with kernel == stride as one GEMM on tensor cores whose output tile is
// scattered into the upsampled NDHWC volume (the math: strided_transpose.h).
//
// Why our own: cuDNN runs this case as a backward-data convolution, which moved the
// U-Net's 2x2x2 upsampling at 0.37 TB/s on an H100 (0.59 ms of a 4.9 ms window); the
// op is a small-K GEMM bound by writing its output, which a plain tiled GEMM with the
// scatter fused into its store does at close to memory speed. Whether it wins is
// measured per shape at plan time (own_kernels.cuh), never assumed.
//
// One block of 4 warps computes a 64-row x 64-column tile of the GEMM with WMMA
// (16x16x16 f16 fragments, f32 accumulators), K in steps of 32 through shared memory;
// the tile goes through shared memory once more so that each row's columns are written
// as consecutive channels (2 f16 per store). Blocks walk the tiles columns-fastest, so
// the blocks running together share their X rows in L2.
#include <mma.h>

#include <algorithm>
#include <cstdint>

#include "cuda/own_kernels.cuh"

namespace itkit::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTileRows = 64, kTileCols = 64, kTileK = 32;
constexpr int kBlockThreads = 128;  // 4 warps, 2 x 2 over the tile, 32 x 32 each
// Row pitches in shared memory: multiples of 8 halves / 4 floats (WMMA's rule), padded
// off a multiple of 32 banks.
constexpr int kLdA = kTileK + 8, kLdB = kTileCols + 8, kLdC = kTileCols + 8;
constexpr int kBlocksPerSm = 5;  // __launch_bounds__ below; the grid is one wave of them

template <bool kVectorLoads>
__device__ void LoadTiles(const StridedTransposeShape& s, const __half* __restrict__ x,
                          const __half* __restrict__ w, int64_t row0, int64_t col0, int64_t k0, __half* a_tile,
                          __half* b_tile) {
  const int64_t rows = StridedTransposeRows(s), cols = StridedTransposeCols(s), K = s.cin;
  if constexpr (kVectorLoads) {
    // 8 halves (16 bytes) per load; K and cols are multiples of 8, so a chunk that
    // starts inside the matrix ends inside it.
    // Every load of the step is issued before any store, so the four round trips
    // overlap instead of each waiting for the previous store.
    constexpr int kChunksA = kTileK / 8, kChunksB = kTileCols / 8;
    constexpr int kPerThreadA = kTileRows * kChunksA / kBlockThreads, kPerThreadB = kTileK * kChunksB / kBlockThreads;
    static_assert(kPerThreadA * kBlockThreads == kTileRows * kChunksA && kPerThreadB * kBlockThreads == kTileK * kChunksB,
                  "whole chunks per thread");
    uint4 va[kPerThreadA], vb[kPerThreadB];
#pragma unroll
    for (int i = 0; i < kPerThreadA; ++i) {
      const int c = threadIdx.x + i * kBlockThreads, r = c / kChunksA, kk = (c % kChunksA) * 8;
      const int64_t row = row0 + r, kg = k0 + kk;
      va[i] = row < rows && kg < K ? *reinterpret_cast<const uint4*>(x + row * K + kg) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < kPerThreadB; ++i) {
      const int c = threadIdx.x + i * kBlockThreads, kk = c / kChunksB, cc = (c % kChunksB) * 8;
      const int64_t kg = k0 + kk, col = col0 + cc;
      vb[i] = kg < K && col < cols ? *reinterpret_cast<const uint4*>(w + kg * cols + col) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < kPerThreadA; ++i) {
      const int c = threadIdx.x + i * kBlockThreads;
      *reinterpret_cast<uint4*>(a_tile + (c / kChunksA) * kLdA + (c % kChunksA) * 8) = va[i];
    }
#pragma unroll
    for (int i = 0; i < kPerThreadB; ++i) {
      const int c = threadIdx.x + i * kBlockThreads;
      *reinterpret_cast<uint4*>(b_tile + (c / kChunksB) * kLdB + (c % kChunksB) * 8) = vb[i];
    }
  } else {
    const __half zero = __float2half(0.0f);
    for (int e = threadIdx.x; e < kTileRows * kTileK; e += kBlockThreads) {
      const int r = e / kTileK, kk = e % kTileK;
      const int64_t row = row0 + r, kg = k0 + kk;
      a_tile[r * kLdA + kk] = row < rows && kg < K ? x[row * K + kg] : zero;
    }
    for (int e = threadIdx.x; e < kTileK * kTileCols; e += kBlockThreads) {
      const int kk = e / kTileCols, cc = e % kTileCols;
      const int64_t kg = k0 + kk, col = col0 + cc;
      b_tile[kk * kLdB + cc] = kg < K && col < cols ? w[kg * cols + col] : zero;
    }
  }
}

template <bool kVectorLoads>
__global__ void __launch_bounds__(kBlockThreads, kBlocksPerSm)
    StridedTransposeKernel(StridedTransposeShape s, const __half* __restrict__ x, const __half* __restrict__ w,
                           const __half* __restrict__ bias, __half* __restrict__ y, int64_t col_tiles,
                           int64_t tiles, bool pairs) {
  __shared__ __align__(128) __half a_tile[kTileRows * kLdA];
  __shared__ __align__(128) __half b_tile[kTileK * kLdB];
  __shared__ __align__(128) float c_tile[kTileRows * kLdC];
  // Per tile: where each row's outputs go (one 64-bit division chain per row, not per
  // element). Each thread's column is the same for every row it stores (the block's
  // 128 threads cover whole tile rows), so its offset and bias are computed once per
  // tile, in registers.
  __shared__ int64_t row_base[kTileRows];
  const int64_t rows = StridedTransposeRows(s), cols = StridedTransposeCols(s);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t row0 = (t / col_tiles) * kTileRows, col0 = (t % col_tiles) * kTileCols;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int64_t k0 = 0; k0 < s.cin; k0 += kTileK) {
      LoadTiles<kVectorLoads>(s, x, w, row0, col0, k0, a_tile, b_tile);
      __syncthreads();
      for (int kk = 0; kk < kTileK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], a_tile + (warp_row + i * 16) * kLdA + kk, kLdA);
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], b_tile + kk * kLdB + warp_col + j * 16, kLdB);
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
      __syncthreads();  // the tiles are refilled by the next K step
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(c_tile + (warp_row + i * 16) * kLdC + warp_col + j * 16, acc[i][j], kLdC,
                                wmma::mem_row_major);
    if (threadIdx.x < kTileRows) {
      const int64_t row = row0 + threadIdx.x;
      row_base[threadIdx.x] = row < rows ? StridedTransposeRowBase(s, row) : 0;
    }
    __syncthreads();
    // Rows this tile has (the rest of the last row tile is padding).
    const int tile_rows = rows - row0 < kTileRows ? static_cast<int>(rows - row0) : kTileRows;
    if (pairs) {
      // Column pairs: with Cout even, both columns are one tap's neighbouring channels
      // and the pair's offset is even (4-byte aligned; Y is, or pairs is false).
      constexpr int kPairs = kTileCols / 2;
      static_assert(kBlockThreads % kPairs == 0, "a thread keeps its column pair");
      const int c = (static_cast<int>(threadIdx.x) % kPairs) * 2;
      const int64_t col = col0 + c;
      if (col < cols) {  // then so is col + 1 (cols is even)
        const int64_t offset = StridedTransposeColumnOffset(s, col);
        const float b0 = bias ? __half2float(bias[col % s.cout]) : 0.0f;
        const float b1 = bias ? __half2float(bias[(col + 1) % s.cout]) : 0.0f;
        for (int r = static_cast<int>(threadIdx.x) / kPairs; r < tile_rows; r += kBlockThreads / kPairs)
          *reinterpret_cast<__half2*>(y + row_base[r] + offset) =
              __floats2half2_rn(c_tile[r * kLdC + c] + b0, c_tile[r * kLdC + c + 1] + b1);
      }
    } else {
      static_assert(kBlockThreads % kTileCols == 0, "a thread keeps its column");
      const int c = static_cast<int>(threadIdx.x) % kTileCols;
      const int64_t col = col0 + c;
      if (col < cols) {
        const int64_t offset = StridedTransposeColumnOffset(s, col);
        const float b = bias ? __half2float(bias[col % s.cout]) : 0.0f;
        for (int r = static_cast<int>(threadIdx.x) / kTileCols; r < tile_rows; r += kBlockThreads / kTileCols)
          y[row_base[r] + offset] = __float2half_rn(c_tile[r * kLdC + c] + b);
      }
    }
    __syncthreads();  // c_tile and row_base are rewritten for the next tile
  }
}

}  // namespace

Status LaunchStridedTranspose(const CudaContext& ctx, const StridedTransposeShape& shape, const __half* x,
                              const __half* w, const __half* bias, __half* y) {
  const int64_t rows = StridedTransposeRows(shape), cols = StridedTransposeCols(shape);
  if (rows <= 0 || cols <= 0 || shape.cin <= 0) return InvalidArgument("strided ConvTranspose: empty GEMM");
  const int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
  const int64_t tiles = ((rows + kTileRows - 1) / kTileRows) * col_tiles;
  // One wave of resident blocks; each walks the tiles (more blocks would only queue).
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, int64_t{ctx.num_sms} * kBlocksPerSm));
  // half2 stores need Cout even and Y 4-byte aligned (arena values are).
  const bool pairs = shape.cout % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 4 == 0;
  // 16-byte loads also need 16-byte aligned X and W (arena values and cudaMalloc'd
  // filters are; a view at an odd offset takes the element-wise loads).
  const bool aligned = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) % 16 == 0;
  if (aligned && StridedTransposeVectorLoads(shape)) {
    StridedTransposeKernel<true><<<grid, kBlockThreads, 0, ctx.stream>>>(shape, x, w, bias, y, col_tiles, tiles,
                                                                         pairs);
  } else {
    StridedTransposeKernel<false><<<grid, kBlockThreads, 0, ctx.stream>>>(shape, x, w, bias, y, col_tiles, tiles,
                                                                          pairs);
  }
  ITKIT_CUDA_CHECK_LAUNCH("StridedTransposeKernel");
  return Status::Ok();
}

}  // namespace itkit::cuda
