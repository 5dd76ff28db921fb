// ConvTranspose whose kernel equals its stride, without padding, dilation, groups or
// output padding (nnU-Net's 2x2x2 upsampling, also anisotropic 1x2x2): the windows do
// not overlap, so the op is one GEMM whose output rows scatter into the upsampled volume:
//
//   Y[n, d*kd+i, h*kh+j, w*kw+l, co] = B[co] + sum_ci X[n, d, h, w, ci] * W[ci, co, i, j, l]
//
// GEMM rows = input voxels (M = N*D*H*W), K = Cin, columns = (tap (i, j, l), co), with X
// and Y channels-last (NDHWC) and W packed [Cin][tap][Cout] (the f16 filter layout the
// cuDNN path already prepacks for ConvTranspose). The kernel is
// conv_transpose_strided.cu; the index math is here, plain C++ with ITKIT_HD markers,
// so that tests/ops checks the code the GPU runs on a machine without a GPU.
#pragma once

#include <stdint.h>

#include "cuda/kernel_math.h"  // ITKIT_HD

namespace itkit::cuda {

struct StridedTransposeShape {
  int64_t n = 0, cin = 0, cout = 0;
  int64_t in[3] = {1, 1, 1};  // D, H, W of X; 1-D and 2-D ops have leading 1s
  int64_t k[3] = {1, 1, 1};   // kernel = stride, per axis
};

ITKIT_HD int64_t StridedTransposeRows(const StridedTransposeShape& s) { return s.n * s.in[0] * s.in[1] * s.in[2]; }
ITKIT_HD int64_t StridedTransposeTaps(const StridedTransposeShape& s) { return s.k[0] * s.k[1] * s.k[2]; }
ITKIT_HD int64_t StridedTransposeCols(const StridedTransposeShape& s) { return StridedTransposeTaps(s) * s.cout; }

// Offset in Y (elements) of GEMM row `row`'s tap (0, 0, 0), channel 0.
ITKIT_HD int64_t StridedTransposeRowBase(const StridedTransposeShape& s, int64_t row) {
  const int64_t w = row % s.in[2];
  int64_t r = row / s.in[2];
  const int64_t h = r % s.in[1];
  r /= s.in[1];
  const int64_t d = r % s.in[0];
  const int64_t n = r / s.in[0];
  const int64_t od = s.in[0] * s.k[0], oh = s.in[1] * s.k[1], ow = s.in[2] * s.k[2];
  return (((n * od + d * s.k[0]) * oh + h * s.k[1]) * ow + w * s.k[2]) * s.cout;
}

// Offset (elements) of GEMM column `col` = tap * Cout + co from its row's base.
ITKIT_HD int64_t StridedTransposeColumnOffset(const StridedTransposeShape& s, int64_t col) {
  const int64_t co = col % s.cout;
  const int64_t tap = col / s.cout;
  const int64_t l = tap % s.k[2];
  const int64_t j = (tap / s.k[2]) % s.k[1];
  const int64_t i = tap / (s.k[2] * s.k[1]);
  const int64_t oh = s.in[1] * s.k[1], ow = s.in[2] * s.k[2];
  return ((i * oh + j) * ow + l) * s.cout + co;
}

// The kernel's 16-byte loads need K and the column count to be multiples of 8 halves;
// other shapes take its element-wise loads.
ITKIT_HD bool StridedTransposeVectorLoads(const StridedTransposeShape& s) {
  return s.cin % 8 == 0 && StridedTransposeCols(s) % 8 == 0;
}

}  // namespace itkit::cuda
