#include "resample.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace itkit::pipeline {
namespace {

// Lower neighbour and weight of the upper one, for each output index of an axis.
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> w;
};

Taps LinearTaps(int64_t src, int64_t dst, double scale) {
  Taps t;
  for (int64_t k = 0; k < dst; ++k) {
    const double p = std::clamp(static_cast<double>(k) * scale, 0.0, static_cast<double>(src - 1));
    const auto lo = static_cast<int64_t>(std::floor(p));
    t.i0.push_back(lo);
    t.i1.push_back(std::min(lo + 1, src - 1));
    t.w.push_back(static_cast<float>(p - static_cast<double>(lo)));
  }
  return t;
}

std::vector<int64_t> NearestTaps(int64_t src, int64_t dst, double scale) {
  std::vector<int64_t> idx;
  for (int64_t k = 0; k < dst; ++k) {
    const auto i = static_cast<int64_t>(std::floor(static_cast<double>(k) * scale + 0.5));
    idx.push_back(std::clamp<int64_t>(i, 0, src - 1));
  }
  return idx;
}

}  // namespace

Zyx ResampledSize(const Zyx& size, const std::array<double, 3>& old_sp, const std::array<double, 3>& new_sp) {
  Zyx out;
  for (size_t a = 0; a < 3; ++a)
    out[a] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(size[a]) * old_sp[a] / new_sp[a] + 0.5)));
  return out;
}

void ResampleLinear(const float* src, int channels, const Zyx& n, float* dst, const Zyx& m,
                    const std::array<double, 3>& scale, ThreadPool* pool) {
  const Taps tz = LinearTaps(n[0], m[0], scale[0]);
  const Taps ty = LinearTaps(n[1], m[1], scale[1]);
  const Taps tx = LinearTaps(n[2], m[2], scale[2]);
  ParallelFor(pool, channels * m[0], 1, [&](int64_t b, int64_t e) {
    for (int64_t cz = b; cz < e; ++cz) {
      const int64_t c = cz / m[0], z = cz % m[0];
      const float wz = tz.w[static_cast<size_t>(z)];
      const float* p0 = src + (c * n[0] + tz.i0[static_cast<size_t>(z)]) * n[1] * n[2];
      const float* p1 = src + (c * n[0] + tz.i1[static_cast<size_t>(z)]) * n[1] * n[2];
      for (int64_t y = 0; y < m[1]; ++y) {
        const float wy = ty.w[static_cast<size_t>(y)];
        const int64_t y0 = ty.i0[static_cast<size_t>(y)] * n[2], y1 = ty.i1[static_cast<size_t>(y)] * n[2];
        float* d = dst + (cz * m[1] + y) * m[2];
        for (int64_t x = 0; x < m[2]; ++x) {
          const int64_t x0 = tx.i0[static_cast<size_t>(x)], x1 = tx.i1[static_cast<size_t>(x)];
          const float wx = tx.w[static_cast<size_t>(x)];
          auto lerp = [](float a, float b, float w) { return a + (b - a) * w; };
          const float a = lerp(lerp(p0[y0 + x0], p0[y0 + x1], wx), lerp(p0[y1 + x0], p0[y1 + x1], wx), wy);
          const float bb = lerp(lerp(p1[y0 + x0], p1[y0 + x1], wx), lerp(p1[y1 + x0], p1[y1 + x1], wx), wy);
          d[x] = lerp(a, bb, wz);
        }
      }
    }
  });
}

template <typename T>
void ResampleNearest(const T* src, const Zyx& n, T* dst, const Zyx& m, const std::array<double, 3>& scale,
                     ThreadPool* pool) {
  const auto iz = NearestTaps(n[0], m[0], scale[0]);
  const auto iy = NearestTaps(n[1], m[1], scale[1]);
  const auto ix = NearestTaps(n[2], m[2], scale[2]);
  ParallelFor(pool, m[0], 1, [&](int64_t b, int64_t e) {
    for (int64_t z = b; z < e; ++z)
      for (int64_t y = 0; y < m[1]; ++y) {
        const T* s = src + (iz[static_cast<size_t>(z)] * n[1] + iy[static_cast<size_t>(y)]) * n[2];
        T* d = dst + (z * m[1] + y) * m[2];
        for (int64_t x = 0; x < m[2]; ++x) d[x] = s[ix[static_cast<size_t>(x)]];
      }
  });
}

template void ResampleNearest<uint8_t>(const uint8_t*, const Zyx&, uint8_t*, const Zyx&,
                                       const std::array<double, 3>&, ThreadPool*);
template void ResampleNearest<uint16_t>(const uint16_t*, const Zyx&, uint16_t*, const Zyx&,
                                        const std::array<double, 3>&, ThreadPool*);

}  // namespace itkit::pipeline
