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
constexpr int kLdA = kTileK + 8, kLdB = kTileCols + 8, kLdC = kTileCols + 4;

template <bool kVectorLoads>
__device__ void LoadTiles(const StridedTransposeShape& s, const __half* __restrict__ x,
                          const __half* __restrict__ w, int64_t row0, int64_t col0, int64_t k0, __half* a_tile,
                          __half* b_tile) {
  const int64_t rows = StridedTransposeRows(s), cols = StridedTransposeCols(s), K = s.cin;
  if constexpr (kVectorLoads) {
    // 8 halves (16 bytes) per load; K and cols are multiples of 8, so a chunk that
    // starts inside the matrix ends inside it.
    constexpr int kChunksA = kTileK / 8, kChunksB = kTileCols / 8;
    for (int c = threadIdx.x; c < kTileRows * kChunksA; c += kBlockThreads) {
      const int r = c / kChunksA, kk = (c % kChunksA) * 8;
      const int64_t row = row0 + r, kg = k0 + kk;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (row < rows && kg < K) v = *reinterpret_cast<const uint4*>(x + row * K + kg);
      *reinterpret_cast<uint4*>(a_tile + r * kLdA + kk) = v;
    }
    for (int c = threadIdx.x; c < kTileK * kChunksB; c += kBlockThreads) {
      const int kk = c / kChunksB, cc = (c % kChunksB) * 8;
      const int64_t kg = k0 + kk, col = col0 + cc;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (kg < K && col < cols) v = *reinterpret_cast<const uint4*>(w + kg * cols + col);
      *reinterpret_cast<uint4*>(b_tile + kk * kLdB + cc) = v;
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
__global__ void __launch_bounds__(kBlockThreads, 5)
    StridedTransposeKernel(StridedTransposeShape s, const __half* __restrict__ x, const __half* __restrict__ w,
                           const __half* __restrict__ bias, __half* __restrict__ y, int64_t col_tiles,
                           int64_t tiles) {
  __shared__ __align__(128) __half a_tile[kTileRows * kLdA];
  __shared__ __align__(128) __half b_tile[kTileK * kLdB];
  __shared__ __align__(128) float c_tile[kTileRows * kLdC];
  // Per tile: where each row's and each column's outputs go, and each column's bias
  // (computed once per tile, not per element: these are 64-bit divisions).
  __shared__ int64_t row_base[kTileRows];
  __shared__ int64_t col_offset[kTileCols];
  __shared__ float col_bias[kTileCols];
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
    static_assert(kBlockThreads >= kTileRows + kTileCols, "one thread per tile row and per tile column");
    if (threadIdx.x < kTileRows) {
      const int64_t row = row0 + threadIdx.x;
      row_base[threadIdx.x] = row < rows ? StridedTransposeRowBase(s, row) : 0;
    } else if (threadIdx.x < kTileRows + kTileCols) {
      const int c = threadIdx.x - kTileRows;
      const int64_t col = col0 + c;
      col_offset[c] = col < cols ? StridedTransposeColumnOffset(s, col) : 0;
      col_bias[c] = bias && col < cols ? __half2float(bias[col % s.cout]) : 0.0f;
    }
    __syncthreads();
    if (s.cout % 2 == 0) {
      // Column pairs: with Cout even, both columns are one tap's neighbouring channels
      // and the pair's offset is even (4-byte aligned).
      constexpr int kPairs = kTileCols / 2;
      for (int e = threadIdx.x; e < kTileRows * kPairs; e += kBlockThreads) {
        const int r = e / kPairs, c = (e % kPairs) * 2;
        const int64_t row = row0 + r, col = col0 + c;
        if (row >= rows || col >= cols) continue;
        const float v0 = c_tile[r * kLdC + c] + col_bias[c], v1 = c_tile[r * kLdC + c + 1] + col_bias[c + 1];
        *reinterpret_cast<__half2*>(y + row_base[r] + col_offset[c]) = __floats2half2_rn(v0, v1);
      }
    } else {
      for (int e = threadIdx.x; e < kTileRows * kTileCols; e += kBlockThreads) {
        const int r = e / kTileCols, c = e % kTileCols;
        const int64_t row = row0 + r, col = col0 + c;
        if (row >= rows || col >= cols) continue;
        y[row_base[r] + col_offset[c]] = __float2half_rn(c_tile[r * kLdC + c] + col_bias[c]);
      }
    }
    __syncthreads();  // c_tile and the per-tile tables are rewritten for the next tile
  }
}

}  // namespace

Status LaunchStridedTranspose(const CudaContext& ctx, const StridedTransposeShape& shape, const __half* x,
                              const __half* w, const __half* bias, __half* y) {
  const int64_t rows = StridedTransposeRows(shape), cols = StridedTransposeCols(shape);
  if (rows <= 0 || cols <= 0 || shape.cin <= 0) return InvalidArgument("strided ConvTranspose: empty GEMM");
  const int64_t col_tiles = (cols + kTileCols - 1) / kTileCols;
  const int64_t tiles = ((rows + kTileRows - 1) / kTileRows) * col_tiles;
  // Enough blocks to fill every SM several times over; each walks the tiles.
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, int64_t{ctx.num_sms} * 16));
  // 16-byte loads also need 16-byte aligned X and W (arena values and cudaMalloc'd
  // filters are; a view at an odd offset takes the element-wise loads).
  const bool aligned = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) % 16 == 0;
  if (aligned && StridedTransposeVectorLoads(shape)) {
    StridedTransposeKernel<true><<<grid, kBlockThreads, 0, ctx.stream>>>(shape, x, w, bias, y, col_tiles, tiles);
  } else {
    StridedTransposeKernel<false><<<grid, kBlockThreads, 0, ctx.stream>>>(shape, x, w, bias, y, col_tiles, tiles);
  }
  ITKIT_CUDA_CHECK_LAUNCH("StridedTransposeKernel");
  return Status::Ok();
}

}  // namespace itkit::cuda
