// Scalar math shared by the CUDA kernels and their host-side tests: activations,
// Resize coordinate transforms, pooling windows, Welford merges. Plain C++ with
// ITKIT_HD markers, so tests/ops can check the exact code the GPU runs on a machine
// without a GPU (no CUDA types in here).
#pragma once

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define ITKIT_HD __host__ __device__ __forceinline__
#else
#define ITKIT_HD inline
#endif

namespace itkit::cuda {

// ---- activations (the fused epilogues of FusedConv / GroupNorm, and unary ops) ----

enum class Act : int { kNone = 0, kRelu, kLeakyRelu, kSigmoid, kTanh, kGelu };

ITKIT_HD float ApplyAct(float x, Act act, float alpha) {
  switch (act) {
    case Act::kNone: return x;
    case Act::kRelu: return x < 0.0f ? 0.0f : x;  // NaN stays NaN, as in PyTorch
    case Act::kLeakyRelu: return x >= 0.0f ? x : x * alpha;
    case Act::kSigmoid: return 1.0f / (1.0f + expf(-x));
    case Act::kTanh: return tanhf(x);
    case Act::kGelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));  // exact (erf) GELU
  }
  return x;
}

// ---- pooling --------------------------------------------------------------------

// The larger of a and b, NaN when either is NaN (torch's max pooling; fmaxf drops NaN).
ITKIT_HD float MaxKeepingNaN(float a, float b) { return (a != a || b < a) ? a : b; }

// ---- Resize (ONNX opset 11+) ----------------------------------------------------

enum class CoordMode : int { kHalfPixel = 0, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfHalfPixelForNn };
enum class NearestMode : int { kRoundPreferFloor = 0, kRoundPreferCeil, kFloor, kCeil };

// Source coordinate of output index `x` along an axis, in double like the CPU
// reference (resize_reference.cpp), so both round the same way at nearest-mode ties.
// `scale` is the given scale (or out/in when sizes were given) and `out_len` is
// scale * in unrounded, as the ONNX reference uses it for align_corners.
ITKIT_HD double ResizeSourceCoord(int64_t x, CoordMode mode, double scale, int64_t in_len, double out_len) {
  const double xd = static_cast<double>(x);
  switch (mode) {
    case CoordMode::kHalfPixel: return (xd + 0.5) / scale - 0.5;
    case CoordMode::kPytorchHalfPixel: return out_len > 1.0 ? (xd + 0.5) / scale - 0.5 : 0.0;
    case CoordMode::kAlignCorners:
      return out_len == 1.0 ? 0.0 : xd * static_cast<double>(in_len - 1) / (out_len - 1.0);
    case CoordMode::kAsymmetric: return xd / scale;
    case CoordMode::kTfHalfPixelForNn: return (xd + 0.5) / scale;
  }
  return 0.0;
}

ITKIT_HD int64_t ClampIndex(int64_t i, int64_t len) { return i < 0 ? 0 : (i >= len ? len - 1 : i); }

ITKIT_HD int64_t NearestIndex(double coord, NearestMode mode, int64_t in_len) {
  const double fl = floor(coord), frac = coord - fl;
  bool up = false;
  if (frac > 0.0) {
    switch (mode) {
      case NearestMode::kRoundPreferFloor: up = frac > 0.5; break;
      case NearestMode::kRoundPreferCeil: up = frac >= 0.5; break;
      case NearestMode::kFloor: up = false; break;
      case NearestMode::kCeil: up = true; break;
    }
  }
  return ClampIndex(static_cast<int64_t>(fl) + (up ? 1 : 0), in_len);
}

// Linear interpolation taps along one axis: the source coordinate is clamped to the
// edge first (torch and onnxruntime do; the zoo's README notes it).
struct LinearTaps {
  int64_t i0, i1;
  float w1;  // weight of i1; i0 gets 1 - w1
};

ITKIT_HD LinearTaps LinearTapsFor(double coord, int64_t in_len) {
  const double hi = static_cast<double>(in_len - 1);
  const double c = coord < 0.0 ? 0.0 : (coord > hi ? hi : coord);
  LinearTaps t;
  t.i0 = static_cast<int64_t>(floor(c));
  t.i1 = t.i0 + 1 < in_len ? t.i0 + 1 : in_len - 1;
  t.w1 = static_cast<float>(c - static_cast<double>(t.i0));
  return t;
}

// ---- pooling ----------------------------------------------------------------------

// Tap counts of output position `o`'s window on one axis (taps at o*stride -
// pad_begin + t*dilation, t < k): taps inside the input, and taps inside the padded
// input [-pad_begin, in + pad_end), the divisor of AveragePool with count_include_pad
// (a ceil_mode window hanging past the end padding does not count its overhang, as in
// PyTorch and onnxruntime).
struct PoolTaps {
  int64_t valid, padded;
};

ITKIT_HD PoolTaps PoolTapsFor(int64_t o, int64_t in, int64_t k, int64_t stride, int64_t dilation,
                              int64_t pad_begin, int64_t pad_end) {
  PoolTaps c{0, 0};
  const int64_t first = o * stride - pad_begin;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t pos = first + t * dilation;
    if (pos >= -pad_begin && pos < in + pad_end) ++c.padded;
    if (pos >= 0 && pos < in) ++c.valid;
  }
  return c;
}

// ---- statistics -------------------------------------------------------------------

// Welford/Chan running (count, mean, M2): numerically stable where sum/sum-of-squares
// in float would cancel (normalised activations with a large mean).
struct Welford {
  float count = 0.0f, mean = 0.0f, m2 = 0.0f;
};

ITKIT_HD void WelfordAdd(Welford& w, float x) {
  w.count += 1.0f;
  const float d = x - w.mean;
  w.mean += d / w.count;
  w.m2 += d * (x - w.mean);
}

ITKIT_HD Welford WelfordMerge(const Welford& a, const Welford& b) {
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  Welford r;
  r.count = a.count + b.count;
  const float d = b.mean - a.mean;
  const float fb = b.count / r.count;
  r.mean = a.mean + d * fb;
  r.m2 = a.m2 + b.m2 + d * d * a.count * fb;
  return r;
}

// ---- sliding-window blending --------------------------------------------------------

// Default window weight at index i of an axis of length n: a Gaussian centred on the
// window (sigma = n * sigma_scale), as nnU-Net blends; callers may pass their own map.
inline double GaussianWeight1d(int64_t i, int64_t n, double sigma_scale) {
  const double sigma = static_cast<double>(n) * sigma_scale;
  const double d = static_cast<double>(i) - (static_cast<double>(n) - 1.0) / 2.0;
  return sigma > 0 ? exp(-(d * d) / (2.0 * sigma * sigma)) : 1.0;
}

}  // namespace itkit::cuda
