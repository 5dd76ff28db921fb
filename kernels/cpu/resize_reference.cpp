// Reference Resize: the per-axis sampling of the ONNX definition (ComputeAxisTaps,
// mirroring onnx/backend/test/case/node/resize.py's interpolate_1d_with_x), and a
// per-output-element evaluation of the separable N-D interpolation in double.
#include <cmath>
#include <cstring>

#include "cpu/resize_kernels.h"

namespace itkit::cpu {
namespace {

// Keys' cubic convolution kernel coefficients for the 4 taps around a sample at
// fractional offset `r` in (0, 1] from tap 1.
void CubicCoefficients(double r, double a, double* c) {
  auto near_w = [a](double t) { return ((a + 2) * t - (a + 3)) * t * t + 1; };           // |t| <= 1
  auto far_w = [a](double t) { return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a; };      // 1 < |t| < 2
  c[0] = far_w(r + 1);
  c[1] = near_w(r);
  c[2] = near_w(1 - r);
  c[3] = far_w(2 - r);
}

}  // namespace

AxisTaps ComputeAxisTaps(const ResizeParams& p, size_t axis, int64_t out_index) {
  using Coord = ResizeParams::Coord;
  const int64_t in = p.in[axis];
  const double scale = p.scales[axis];
  const double out_len = scale * static_cast<double>(in);  // not rounded, as in the ONNX reference
  const double x = static_cast<double>(out_index);
  double xo = 0.0;
  AxisTaps t;
  switch (p.coord) {
    case Coord::kHalfPixel: xo = (x + 0.5) / scale - 0.5; break;
    case Coord::kPytorchHalfPixel: xo = out_len > 1 ? (x + 0.5) / scale - 0.5 : 0.0; break;
    case Coord::kAlignCorners: xo = out_len == 1 ? 0.0 : x * static_cast<double>(in - 1) / (out_len - 1); break;
    case Coord::kAsymmetric: xo = x / scale; break;
    case Coord::kTfHalfPixelForNn: xo = (x + 0.5) / scale; break;
    case Coord::kTfCropAndResize: {
      const double start = p.roi_start[axis], end = p.roi_end[axis], span = static_cast<double>(in - 1);
      xo = out_len == 1 ? (end - start) * span / 2 : x * (end - start) * span / (out_len - 1);
      xo += start * span;
      t.outside = xo < 0 || xo > span;
      break;
    }
  }
  auto clamp = [in](int64_t i) { return i < 0 ? int64_t{0} : (i >= in ? in - 1 : i); };
  const double fl = std::floor(xo);
  if (p.mode == ResizeParams::Mode::kNearest) {
    int64_t i = static_cast<int64_t>(fl);
    const double frac = xo - fl;
    if (frac > 0) {
      bool up = false;
      switch (p.nearest) {
        case ResizeParams::Nearest::kRoundPreferFloor: up = frac > 0.5; break;
        case ResizeParams::Nearest::kRoundPreferCeil: up = frac >= 0.5; break;
        case ResizeParams::Nearest::kFloor: up = false; break;
        case ResizeParams::Nearest::kCeil: up = true; break;
        case ResizeParams::Nearest::kSimple: up = scale < 1; break;
      }
      i += up ? 1 : 0;
    }
    t.count = 1;
    t.index[0] = clamp(i);
    t.weight[0] = 1.0;
    return t;
  }
  // Linear/cubic: the n input positions nearest to xo (preferring the lower one on a
  // tie, so an exact hit uses ratio 1 on its left neighbour), found within the input
  // edge-padded by n/2, with the ratio-derived weights.
  const int n = p.mode == ResizeParams::Mode::kLinear ? 2 : 4;
  int64_t base = static_cast<int64_t>(fl);
  double ratio = xo - fl;
  if (ratio == 0) {
    ratio = 1;
    base -= 1;
  }
  int64_t first = base - (n / 2 - 1);
  const int64_t lo = -(n / 2), hi = in - 1 + n / 2;
  if (first < lo) first = lo;
  if (first + n - 1 > hi) first = hi - (n - 1);
  double w[4];
  if (n == 2) {
    w[0] = 1 - ratio;
    w[1] = ratio;
  } else {
    CubicCoefficients(ratio, p.cubic_a, w);
  }
  if (p.exclude_outside) {
    double sum = 0;
    for (int k = 0; k < n; ++k) {
      const int64_t i = first + k;
      if (i < 0 || i >= in) w[k] = 0;
      sum += w[k];
    }
    if (sum != 0)
      for (int k = 0; k < n; ++k) w[k] /= sum;
  }
  t.count = n;
  for (int k = 0; k < n; ++k) {
    t.index[k] = clamp(first + k);
    t.weight[k] = w[k];
  }
  return t;
}

void ResizeReference(const ResizeParams& p, const void* xv, void* yv) {
  const size_t rank = p.in.size();
  const int64_t total = ElementCount(p.out);
  const std::vector<int64_t> in_strides = ContiguousStrides(p.in);
  std::vector<int64_t> coord(rank, 0);
  std::vector<AxisTaps> taps(rank);
  for (int64_t o = 0; o < total; ++o) {
    int64_t rem = o;
    for (size_t a = rank; a-- > 0;) {
      coord[a] = rem % p.out[a];
      rem /= p.out[a];
    }
    bool outside = false;
    for (size_t a = 0; a < rank; ++a) {
      taps[a] = ComputeAxisTaps(p, a, coord[a]);
      outside = outside || taps[a].outside;
    }
    if (p.mode == ResizeParams::Mode::kNearest && !outside) {
      int64_t src = 0;
      for (size_t a = 0; a < rank; ++a) src += taps[a].index[0] * in_strides[a];
      std::memcpy(static_cast<char*>(yv) + o * p.element_size,
                  static_cast<const char*>(xv) + src * p.element_size, p.element_size);
      continue;
    }
    float* y = static_cast<float*>(yv);
    if (outside) {
      y[o] = p.extrapolation_value;
      continue;
    }
    // Sum over every combination of taps (an odometer over the axes).
    const float* x = static_cast<const float*>(xv);
    std::vector<int> k(rank, 0);
    double acc = 0;
    for (;;) {
      double w = 1;
      int64_t src = 0;
      for (size_t a = 0; a < rank; ++a) {
        w *= taps[a].weight[k[a]];
        src += taps[a].index[k[a]] * in_strides[a];
      }
      acc += w * x[src];
      size_t a = rank;
      while (a-- > 0 && ++k[a] == taps[a].count) k[a] = 0;
      if (a == static_cast<size_t>(-1)) break;
    }
    y[o] = static_cast<float>(acc);
  }
}

}  // namespace itkit::cpu
