// The index math of our 3x3x3 convolution kernel (conv3_c32.cu): 32 -> 32 channels,
// stride 1, padding 1, f16 NDHWC in and out, f32 accumulation on tensor cores
// (mma.sync m16n8k16). Plain C++ with ITKIT_HD markers, so that tests/ops emulates
// the kernel's shared-memory layout, ldmatrix lanes and mma fragments with this exact
// code on a machine without a GPU (test_cuda_conv3_host.cpp).
//
// The walk: one block owns a column of the output, 8 rows (H) x 64 voxels (W) of one
// sample, and marches through its depth range plane by plane. Output plane d needs
// input planes d-1, d, d+1, each as a 10 x 66 voxel halo; the block keeps four of
// them in a ring in shared memory (three in use, the next one loading), so every
// input plane is read from global memory once per block. The 27 x 32 x 32 filter sits
// in shared memory for the whole walk. Warp i computes output row i: 64 voxels (4 mma
// row tiles) x 32 output channels (4 mma column tiles), K = 27 taps x 32 channels.
//
// Shared memory rows are 64 bytes (32 f16 channels) of four 16-byte chunks, the chunk
// index XORed with bits 1-2 of the row: any 8 consecutive rows read by one ldmatrix
// phase then fall in 8 distinct bank groups, whatever row they start at (taps shift
// the start by one voxel).
#pragma once

#include <stdint.h>

#include "cuda/kernel_math.h"  // ITKIT_HD

namespace itkit::cuda {

constexpr int kConv3Channels = 32;  // Cin = Cout
constexpr int kConv3Taps = 27;
constexpr int kConv3TileH = 8, kConv3TileW = 64;  // output voxels per block and plane
constexpr int kConv3HaloH = kConv3TileH + 2, kConv3HaloW = kConv3TileW + 2;
constexpr int kConv3Warps = kConv3TileH;  // one output row each
constexpr int kConv3Threads = kConv3Warps * 32;
constexpr int kConv3RowBytes = kConv3Channels * 2;
constexpr int kConv3ChunksPerRow = kConv3RowBytes / 16;
constexpr int kConv3PlaneVoxels = kConv3HaloH * kConv3HaloW;
constexpr int kConv3PlaneBytes = kConv3PlaneVoxels * kConv3RowBytes;
constexpr int kConv3Slots = 4;  // input planes held: d-1, d, d+1 and d+2 loading
constexpr int kConv3WeightBytes = kConv3Taps * kConv3Channels * kConv3RowBytes;
constexpr int kConv3SmemBytes = kConv3WeightBytes + kConv3Slots * kConv3PlaneBytes;  // 224,256

struct Conv3Shape {
  int64_t n = 0, d = 0, h = 0, w = 0;  // input = output extents
};

// The blocks: columns (sample, row tile, column tile) times depth chunks.
struct Conv3Grid {
  int64_t tiles_h = 0, tiles_w = 0, columns = 0;
  int64_t chunks = 1, planes_per_chunk = 0;
  int64_t blocks() const { return columns * chunks; }
};

// Splits the depth into chunks so that the blocks fill the GPU's SMs (one block per SM
// fits): fewest waves times planes per block, each chunk paying about one plane more
// for loading its first three halo planes before it can start.
inline Conv3Grid Conv3MakeGrid(const Conv3Shape& s, int num_sms) {
  Conv3Grid g;
  g.tiles_h = (s.h + kConv3TileH - 1) / kConv3TileH;
  g.tiles_w = (s.w + kConv3TileW - 1) / kConv3TileW;
  g.columns = s.n * g.tiles_h * g.tiles_w;
  const int64_t sms = num_sms > 0 ? num_sms : 1;
  int64_t best_cost = -1;
  for (int64_t chunks = 1; chunks <= s.d && chunks <= 256; ++chunks) {
    const int64_t per_chunk = (s.d + chunks - 1) / chunks;
    if (chunks > 1 && (chunks - 1) * per_chunk >= s.d) continue;  // an empty last chunk
    const int64_t waves = (g.columns * chunks + sms - 1) / sms;
    const int64_t cost = waves * (per_chunk + 1);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      g.chunks = chunks;
      g.planes_per_chunk = per_chunk;
    }
  }
  return g;
}

struct Conv3Block {
  int64_t n = 0, h0 = 0, w0 = 0;  // first output row and column of the tile
  int64_t d_begin = 0, d_end = 0;  // output planes [d_begin, d_end)
};

ITKIT_HD Conv3Block Conv3BlockOf(const Conv3Shape& s, const Conv3Grid& g, int64_t block) {
  Conv3Block b;
  const int64_t chunk = block % g.chunks;
  int64_t column = block / g.chunks;
  b.w0 = (column % g.tiles_w) * kConv3TileW;
  column /= g.tiles_w;
  b.h0 = (column % g.tiles_h) * kConv3TileH;
  b.n = column / g.tiles_h;
  b.d_begin = chunk * g.planes_per_chunk;
  b.d_end = b.d_begin + g.planes_per_chunk < s.d ? b.d_begin + g.planes_per_chunk : s.d;
  return b;
}

// Byte offset of 16-byte chunk `chunk` of 64-byte row `row` in a swizzled table.
ITKIT_HD uint32_t Conv3RowChunkOffset(uint32_t row, uint32_t chunk) {
  return row * kConv3RowBytes + ((chunk ^ ((row >> 1) & 3u)) << 4);
}

// The ring slot of input plane `plane` for a block starting at d_begin (plane
// d_begin - 1 goes to slot 0).
ITKIT_HD int Conv3SlotOf(int64_t plane, int64_t d_begin) { return static_cast<int>((plane - d_begin + 1) & 3); }

// Accumulator register `i` (0-3) of column tile `nt`, row tile `mt` in lane `lane`:
// the voxel along the warp's row and the output channel it holds (mma's C layout).
ITKIT_HD void Conv3AccPosition(int mt, int nt, int i, int lane, int* voxel, int* cout) {
  *voxel = mt * 16 + (lane >> 2) + (i >= 2 ? 8 : 0);
  *cout = nt * 8 + (lane & 3) * 2 + (i & 1);
}

// The kernel's walk over one halo plane: thread `t` copies chunks t, t + 256, t + 512,
// ..., chunk e being 16-byte part e % 4 of halo voxel e / 4 (row-major over the 10 x 66
// halo, voxel (0, 0) at (h0 - 1, w0 - 1)); it steps its voxel by 64 (= 256 chunks / 4)
// with one wrap into the next halo row at most, so that no chunk pays for two divisions.
struct Conv3HaloWalker {
  int hh = 0, ww = 0, chunk = 0;  // the current chunk's halo row, halo column and 16-byte part
  int e = 0;                      // its number

  ITKIT_HD explicit Conv3HaloWalker(int thread) : e(thread) {
    const int voxel = thread / kConv3ChunksPerRow;
    hh = voxel / kConv3HaloW;
    ww = voxel % kConv3HaloW;
    chunk = thread % kConv3ChunksPerRow;
  }
  ITKIT_HD bool done() const { return e >= kConv3PlaneVoxels * kConv3ChunksPerRow; }
  ITKIT_HD void Next() {
    static_assert(kConv3Threads % kConv3ChunksPerRow == 0 && kConv3Threads / kConv3ChunksPerRow < kConv3HaloW,
                  "a step moves the voxel by less than a halo row");
    e += kConv3Threads;
    ww += kConv3Threads / kConv3ChunksPerRow;
    if (ww >= kConv3HaloW) {
      ww -= kConv3HaloW;
      ++hh;
    }
  }
  // Where the chunk goes in its slot (*smem_offset) and the element offset in X it comes
  // from, or -1 where the halo lies outside the volume (zeros: the padding); given the
  // plane's base offset in X (Conv3PlaneBase) and whether the plane is inside the volume.
  ITKIT_HD int64_t Source(const Conv3Shape& s, const Conv3Block& b, int64_t plane_base, bool plane_inside,
                          uint32_t* smem_offset) const {
    *smem_offset = Conv3RowChunkOffset(static_cast<uint32_t>(hh * kConv3HaloW + ww), static_cast<uint32_t>(chunk));
    const int64_t h = b.h0 - 1 + hh, w = b.w0 - 1 + ww;
    if (!plane_inside || h < 0 || h >= s.h || w < 0 || w >= s.w) return -1;
    return plane_base + (h * s.w + w) * kConv3Channels + chunk * 8;
  }
};

ITKIT_HD int64_t Conv3PlaneBase(const Conv3Shape& s, const Conv3Block& b, int64_t plane) {
  return (b.n * s.d + plane) * s.h * s.w * kConv3Channels;
}

// Output pair `half_row` (0: rows g, 1: rows g + 8) of row tile `mt` and column tile
// `nt` in lane `lane` of warp `warp` at output plane d: the element offset in Y (and Z)
// of its first channel (the second follows), or -1 outside the volume.
ITKIT_HD int64_t Conv3OutputPair(const Conv3Shape& s, const Conv3Block& b, int64_t d, int warp, int mt, int nt,
                                 int half_row, int lane) {
  int voxel = 0, cout = 0;
  Conv3AccPosition(mt, nt, half_row * 2, lane, &voxel, &cout);
  const int64_t h = b.h0 + warp, w = b.w0 + voxel;
  if (h >= s.h || w >= s.w) return -1;
  return (((b.n * s.d + d) * s.h + h) * s.w + w) * kConv3Channels + cout;
}

// A block whose tile lies wholly inside the volume's width (every tile of a 128^3
// volume) stores each row at Conv3RowBase + Conv3FullTilePair: one base per row, and
// offsets in which only the lane is not a compile-time constant, so its Z reads need no
// per-pair bounds check (and go out together).
ITKIT_HD bool Conv3FullWidth(const Conv3Shape& s, const Conv3Block& b) { return b.w0 + kConv3TileW <= s.w; }
ITKIT_HD int64_t Conv3RowBase(const Conv3Shape& s, const Conv3Block& b, int64_t d, int64_t h) {
  return (((b.n * s.d + d) * s.h + h) * s.w + b.w0) * kConv3Channels;
}
ITKIT_HD int Conv3FullTilePair(int mt, int nt, int half_row, int lane) {
  int voxel = 0, cout = 0;
  Conv3AccPosition(mt, nt, half_row * 2, lane, &voxel, &cout);
  return voxel * kConv3Channels + cout;
}

// Chunk `e` (0 .. kConv3Taps * 32 * 4 - 1) of the filter, packed [Cout][tap][Cin] in
// global memory (the cuDNN path's NDHWC filter) and [tap][Cout][Cin] in shared memory.
// Returns the element offset in the packed filter.
ITKIT_HD int64_t Conv3WeightSource(int e, uint32_t* smem_offset) {
  const int chunk = e % kConv3ChunksPerRow, row = e / kConv3ChunksPerRow;  // row = cout * 27 + tap
  const int cout = row / kConv3Taps, tap = row % kConv3Taps;
  *smem_offset = Conv3RowChunkOffset(static_cast<uint32_t>(tap * kConv3Channels + cout), static_cast<uint32_t>(chunk));
  return static_cast<int64_t>(e) * 8;
}

// ldmatrix.x4 lane addresses. A (16 voxels x 16 input channels of one tap): lanes
// 0-7 give rows 0-7 of channels 0-7, lanes 8-15 rows 8-15, lanes 16-23 rows 0-7 of
// channels 8-15, lanes 24-31 rows 8-15: the registers come back as mma's a0..a3.
// `kk` picks channels 0-15 or 16-31; `mt` the 16-voxel row tile of warp `warp`'s row.
ITKIT_HD uint32_t Conv3ALaneOffset(int warp, int mt, int kh, int kw, int kk, int lane) {
  const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int voxel = (warp + kh) * kConv3HaloW + mt * 16 + row + kw;
  return Conv3RowChunkOffset(static_cast<uint32_t>(voxel), static_cast<uint32_t>(kk * 2 + (lane >> 4)));
}

// B (16 input channels x 8 output channels) for the column-tile pair `np` (output
// channels np*16 .. np*16+15): lanes 0-7 give tile 2np's channels at k 0-7, lanes
// 8-15 the same at k 8-15, lanes 16-31 likewise for tile 2np+1: the registers come
// back as {b0, b1} of tile 2np, then of tile 2np+1.
ITKIT_HD uint32_t Conv3BLaneOffset(int tap, int np, int kk, int lane) {
  const int q = lane >> 3;
  const int cout = (np * 2 + (q >> 1)) * 8 + (lane & 7);
  return Conv3RowChunkOffset(static_cast<uint32_t>(tap * kConv3Channels + cout),
                             static_cast<uint32_t>(kk * 2 + (q & 1)));
}

}  // namespace itkit::cuda
