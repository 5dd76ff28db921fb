#include "sliding_window.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace itkit::pipeline {

std::vector<int64_t> WindowStarts(int64_t size, int64_t patch, int64_t stride) {
  const int64_t n = std::max<int64_t>(size - patch + stride - 1, 0) / stride + 1;
  std::vector<int64_t> starts;
  starts.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t end = std::min(i * stride + patch, size);
    starts.push_back(std::max<int64_t>(end - patch, 0));
  }
  return starts;
}

Zyx WindowPlan::Start(int64_t index) const {
  const auto nx = static_cast<int64_t>(starts[2].size());
  const auto ny = static_cast<int64_t>(starts[1].size());
  return {starts[0][static_cast<size_t>(index / (nx * ny))],
          starts[1][static_cast<size_t>((index / nx) % ny)],
          starts[2][static_cast<size_t>(index % nx)]};
}

Result<WindowPlan> PlanWindows(const Zyx& size, const Zyx& patch, const Zyx& stride) {
  WindowPlan p;
  p.size = size;
  p.patch = patch;
  p.stride = stride;
  static const char* kAxis[] = {"z", "y", "x"};
  for (size_t a = 0; a < 3; ++a) {
    if (size[a] <= 0) return InvalidArgument("volume axis ", kAxis[a], " has size ", size[a]);
    if (patch[a] <= 0) return InvalidArgument("patch_size ", kAxis[a], " must be positive, got ", patch[a]);
    if (stride[a] <= 0) return InvalidArgument("patch_stride ", kAxis[a], " must be positive, got ", stride[a]);
    if (stride[a] > patch[a])
      return InvalidArgument("patch_stride ", kAxis[a], " (", stride[a], ") is larger than the patch (",
                             patch[a], "): some voxels would be in no window");
    const int64_t pad = std::max<int64_t>(patch[a] - size[a], 0);
    p.pad_before[a] = pad / 2;
    p.pad_after[a] = pad - pad / 2;
    p.padded[a] = size[a] + pad;
    p.starts[a] = WindowStarts(p.padded[a], patch[a], stride[a]);
  }
  return p;
}

std::vector<float> GaussianWeights(int64_t patch) {
  std::vector<float> w(static_cast<size_t>(patch));
  const double sigma = static_cast<double>(patch) / 8.0;
  const double centre = static_cast<double>(patch / 2);
  for (int64_t i = 0; i < patch; ++i) {
    const double d = static_cast<double>(i) - centre;
    w[static_cast<size_t>(i)] = static_cast<float>(std::exp(-d * d / (2.0 * sigma * sigma)));
  }
  return w;  // exp(0) = 1 at the centre: already max-normalised
}

std::vector<float> AxisCoverage(const std::vector<int64_t>& starts, int64_t size, int64_t patch,
                                const std::vector<float>& weights) {
  std::vector<double> sum(static_cast<size_t>(size), 0.0);
  for (int64_t s : starts)
    for (int64_t i = 0; i < patch && s + i < size; ++i)
      sum[static_cast<size_t>(s + i)] += weights.empty() ? 1.0 : weights[static_cast<size_t>(i)];
  return std::vector<float>(sum.begin(), sum.end());
}

void PadReplicate(const float* src, int channels, const WindowPlan& plan, float* dst, ThreadPool* pool) {
  const Zyx& n = plan.size;
  const Zyx& m = plan.padded;
  const int64_t planes = static_cast<int64_t>(channels) * m[0];
  ParallelFor(pool, planes, 1, [&](int64_t b, int64_t e) {
    for (int64_t cz = b; cz < e; ++cz) {
      const int64_t c = cz / m[0], z = cz % m[0];
      const int64_t sz = std::clamp<int64_t>(z - plan.pad_before[0], 0, n[0] - 1);
      for (int64_t y = 0; y < m[1]; ++y) {
        const int64_t sy = std::clamp<int64_t>(y - plan.pad_before[1], 0, n[1] - 1);
        const float* s = src + ((c * n[0] + sz) * n[1] + sy) * n[2];
        float* d = dst + ((c * m[0] + z) * m[1] + y) * m[2];
        const int64_t before = plan.pad_before[2];
        for (int64_t x = 0; x < before; ++x) d[x] = s[0];
        std::memcpy(d + before, s, static_cast<size_t>(n[2]) * sizeof(float));
        for (int64_t x = before + n[2]; x < m[2]; ++x) d[x] = s[n[2] - 1];
      }
    }
  });
}

void ExtractWindow(const float* volume, int channels, const Zyx& dims, const Zyx& start,
                   const Zyx& patch, float* dst) {
  for (int c = 0; c < channels; ++c)
    for (int64_t z = 0; z < patch[0]; ++z)
      for (int64_t y = 0; y < patch[1]; ++y) {
        const float* s = volume + ((c * dims[0] + start[0] + z) * dims[1] + start[1] + y) * dims[2] + start[2];
        std::memcpy(dst, s, static_cast<size_t>(patch[2]) * sizeof(float));
        dst += patch[2];
      }
}

}  // namespace itkit::pipeline
