// Convolutions written out from their ONNX definitions, in double, for the tests of
// our own CUDA kernels (test_cuda_conv3_host.cpp, tests/cuda_emu): activations NDHWC,
// filters in ONNX's layout, and the packings the kernels take.
#pragma once

#include <cstdint>
#include <vector>

namespace itkit::test::ops {

struct NdhwcShape {
  int64_t n = 0, d = 0, h = 0, w = 0;
  int64_t voxels() const { return n * d * h * w; }
};

// 3x3x3, stride 1, padding 1: y[n, d, h, w, co] = bias[co] + z[same] + sum over ci and
// taps of x[n, d+kd-1, h+kh-1, w+kw-1, ci] * w[co][ci][kd][kh][kw]. `bias` and `z` may
// be empty.
inline std::vector<float> Conv3x3x3ByDefinition(const NdhwcShape& s, int cin, int cout, const std::vector<float>& x,
                                                const std::vector<float>& w, const std::vector<float>& bias = {},
                                                const std::vector<float>& z = {}) {
  std::vector<float> y(static_cast<size_t>(s.voxels() * cout));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t d = 0; d < s.d; ++d)
      for (int64_t h = 0; h < s.h; ++h)
        for (int64_t wv = 0; wv < s.w; ++wv)
          for (int co = 0; co < cout; ++co) {
            const auto out = static_cast<size_t>((((n * s.d + d) * s.h + h) * s.w + wv) * cout + co);
            double acc = (bias.empty() ? 0.0 : bias[static_cast<size_t>(co)]) + (z.empty() ? 0.0 : z[out]);
            for (int kd = 0; kd < 3; ++kd)
              for (int kh = 0; kh < 3; ++kh)
                for (int kw = 0; kw < 3; ++kw) {
                  const int64_t id = d + kd - 1, ih = h + kh - 1, iw = wv + kw - 1;
                  if (id < 0 || id >= s.d || ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  for (int ci = 0; ci < cin; ++ci)
                    acc += static_cast<double>(x[static_cast<size_t>((((n * s.d + id) * s.h + ih) * s.w + iw) * cin + ci)]) *
                           w[static_cast<size_t>((((co * cin + ci) * 3 + kd) * 3 + kh) * 3 + kw)];
                }
            y[out] = static_cast<float>(acc);
          }
  return y;
}

// ONNX [Cout][Cin][27] -> [Cout][tap][Cin] (our 3x3x3 kernels' filter layout).
inline std::vector<float> PackCoutTapCin(const std::vector<float>& w, int cout, int cin) {
  std::vector<float> packed(w.size());
  for (int co = 0; co < cout; ++co)
    for (int ci = 0; ci < cin; ++ci)
      for (int t = 0; t < 27; ++t)
        packed[static_cast<size_t>((co * 27 + t) * cin + ci)] = w[static_cast<size_t>((co * cin + ci) * 27 + t)];
  return packed;
}

// ConvTranspose with kernel == stride `k`, no padding: y[n, d*k0+i, h*k1+j, w*k2+l, co] =
// bias[co] + sum_ci x[n, d, h, w, ci] * w[ci][co][i][j][l] (x's extents `in`).
inline std::vector<float> StridedTransposeByDefinition(int64_t n, const int64_t (&in)[3], const int64_t (&k)[3],
                                                       int cin, int cout, const std::vector<float>& x,
                                                       const std::vector<float>& w, const std::vector<float>& bias) {
  const int64_t od = in[0] * k[0], oh = in[1] * k[1], ow = in[2] * k[2], taps = k[0] * k[1] * k[2];
  std::vector<float> y(static_cast<size_t>(n * od * oh * ow * cout));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t d = 0; d < in[0]; ++d)
      for (int64_t h = 0; h < in[1]; ++h)
        for (int64_t wv = 0; wv < in[2]; ++wv)
          for (int64_t i = 0; i < k[0]; ++i)
            for (int64_t j = 0; j < k[1]; ++j)
              for (int64_t l = 0; l < k[2]; ++l)
                for (int co = 0; co < cout; ++co) {
                  double acc = bias.empty() ? 0.0 : bias[static_cast<size_t>(co)];
                  for (int ci = 0; ci < cin; ++ci)
                    acc += static_cast<double>(x[static_cast<size_t>((((b * in[0] + d) * in[1] + h) * in[2] + wv) * cin + ci)]) *
                           w[static_cast<size_t>(((ci * cout + co) * taps) + (i * k[1] + j) * k[2] + l)];
                  const int64_t out = (((b * od + d * k[0] + i) * oh + h * k[1] + j) * ow + wv * k[2] + l) * cout + co;
                  y[static_cast<size_t>(out)] = static_cast<float>(acc);
                }
  return y;
}

// ONNX ConvTranspose [Cin][Cout][taps] -> [Cin][tap][Cout] (the strided kernel's layout).
inline std::vector<float> PackCinTapCout(const std::vector<float>& w, int cin, int cout, int64_t taps) {
  std::vector<float> packed(w.size());
  for (int ci = 0; ci < cin; ++ci)
    for (int co = 0; co < cout; ++co)
      for (int64_t t = 0; t < taps; ++t)
        packed[static_cast<size_t>((ci * taps + t) * cout + co)] = w[static_cast<size_t>((ci * cout + co) * taps + t)];
  return packed;
}

}  // namespace itkit::test::ops
