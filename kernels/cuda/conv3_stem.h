// The walk and arithmetic of our 3x3x3 "stem" convolution (conv3_stem.cu): the first
// convolution of a segmentation network, from the image's few channels (1-4
// modalities) to 16 or 32 feature channels, stride 1, padding 1, f16 NDHWC in and out,
// f32 sums. Plain C++ with ITKIT_HD markers, so that tests/ops runs this exact code on
// the host against a plain convolution (test_cuda_conv3_host.cpp, CudaConv3Stem.*).
//
// Why: with one input channel the GEMM behind cuDNN's tensor-core kernels has K = 27
// (padded), and the layer writes 32 channels per voxel; it is bound by writing its
// output, which a direct convolution on the CUDA cores does at ~864 FMAs per voxel.
// Whether it wins is raced per shape at plan time (own_kernels.cuh).
//
// One item = one (sample, z, y) row and two neighbouring voxels x0, x0 + 1 of it: per
// input row the four inputs x0 - 1 .. x0 + 2 are loaded once and feed both voxels, and
// each filter value read feeds two FMAs.
#pragma once

#include <stdint.h>

#include "cuda/kernel_math.h"  // ITKIT_HD, Act

// Fully unrolled on the GPU, so that the sums and inputs stay in registers (the device
// pass only: the host compiler does not know the pragma).
#ifdef __CUDA_ARCH__
#define ITKIT_STEM_UNROLL _Pragma("unroll")
#else
#define ITKIT_STEM_UNROLL
#endif

namespace itkit::cuda {

constexpr int kStemMaxCin = 4;
constexpr int kStemVoxels = 2;  // along W per item
constexpr int kStemTaps = 27;
constexpr int kStemThreads = 128;  // with ~135 registers, 3 blocks (12 warps) per SM

struct StemShape {
  int64_t n = 0, d = 0, h = 0, w = 0;  // the input's (= the output's) extents
  int cin = 0, cout = 0;
};

struct StemItem {
  int64_t n, z, y, x0;
};

ITKIT_HD int64_t StemPairs(const StemShape& s) { return (s.w + kStemVoxels - 1) / kStemVoxels; }
ITKIT_HD int64_t StemItems(const StemShape& s) { return s.n * s.d * s.h * StemPairs(s); }

// Item i of the grid-stride loop: x fastest, so a warp's loads and stores are contiguous.
// The divisions in `Index`: uint32_t where every item number fits (a 64-bit division
// costs the GPU dozens of instructions), int64_t otherwise.
template <typename Index = int64_t>
ITKIT_HD StemItem StemItemOf(const StemShape& s, int64_t item) {
  const auto pairs = static_cast<Index>(StemPairs(s)), h = static_cast<Index>(s.h), d = static_cast<Index>(s.d);
  auto i = static_cast<Index>(item);
  StemItem it;
  it.x0 = static_cast<int64_t>(i % pairs) * kStemVoxels;
  i /= pairs;
  it.y = static_cast<int64_t>(i % h);
  i /= h;
  it.z = static_cast<int64_t>(i % d);
  it.n = static_cast<int64_t>(i / d);
  return it;
}

// Element offset of voxel (n, z, y, x), channel c, in an NDHWC tensor of `channels`.
ITKIT_HD int64_t StemOffset(const StemShape& s, int64_t n, int64_t z, int64_t y, int64_t x, int channels, int c) {
  return (((n * s.d + z) * s.h + y) * s.w + x) * channels + c;
}

// acc[v][co] = sum over taps and input channels for voxels x0 + v (v < kStemVoxels; a
// voxel past the row's end gets sums of zeros). load(offset) reads X (NDHWC, cin
// channels) as float; weight(tap, ci, co) the filter, tap = (dz * 3 + dy) * 3 + dx.
// Taps outside the volume are the zero padding.
template <int CIN, int COUT, typename Load, typename Weight>
ITKIT_HD void StemAccumulate(const StemShape& s, const StemItem& it, const Load& load, const Weight& weight,
                             float (&acc)[kStemVoxels][COUT]) {
  ITKIT_STEM_UNROLL
  for (int v = 0; v < kStemVoxels; ++v)
    ITKIT_STEM_UNROLL
    for (int co = 0; co < COUT; ++co) acc[v][co] = 0.0f;
  ITKIT_STEM_UNROLL
  for (int dz = 0; dz < 3; ++dz) {
    const int64_t z = it.z + dz - 1;
    if (z < 0 || z >= s.d) continue;
    ITKIT_STEM_UNROLL
    for (int dy = 0; dy < 3; ++dy) {
      const int64_t y = it.y + dy - 1;
      if (y < 0 || y >= s.h) continue;
      // Inputs x0 - 1 .. x0 + 2 of this row, every channel (zeros outside).
      float in[kStemVoxels + 2][CIN];
      ITKIT_STEM_UNROLL
      for (int k = 0; k < kStemVoxels + 2; ++k) {
        const int64_t x = it.x0 - 1 + k;
        const bool inside = x >= 0 && x < s.w;
        ITKIT_STEM_UNROLL
        for (int ci = 0; ci < CIN; ++ci) in[k][ci] = inside ? load(StemOffset(s, it.n, z, y, x, CIN, ci)) : 0.0f;
      }
      ITKIT_STEM_UNROLL
      for (int dx = 0; dx < 3; ++dx) {
        const int tap = (dz * 3 + dy) * 3 + dx;
        ITKIT_STEM_UNROLL
        for (int ci = 0; ci < CIN; ++ci)
          ITKIT_STEM_UNROLL
          for (int co = 0; co < COUT; ++co) {
            const float w = weight(tap, ci, co);
            ITKIT_STEM_UNROLL
            for (int v = 0; v < kStemVoxels; ++v) acc[v][co] += in[v + dx][ci] * w;
          }
      }
    }
  }
}

}  // namespace itkit::cuda
