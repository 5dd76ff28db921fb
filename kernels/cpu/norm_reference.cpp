// Reference normalisations: single-threaded, two passes in double precision,
// straight from the ONNX definitions.
#include <cmath>

#include "cpu/norm_kernels.h"

namespace itkit::cpu {

void GroupNormReference(const GroupNormShape& s, const float* x, const float* scale, const float* bias, float eps,
                        const Activation& act, float* y, const float* residual) {
  const int64_t cpg = s.channels / s.groups;
  const int64_t len = cpg * s.spatial;  // a group's channels are contiguous
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t g = 0; g < s.groups; ++g) {
      const int64_t base = (n * s.channels + g * cpg) * s.spatial;
      double sum = 0.0;
      for (int64_t i = 0; i < len; ++i) sum += x[base + i];
      const double mean = len > 0 ? sum / static_cast<double>(len) : 0.0;
      double sq = 0.0;
      for (int64_t i = 0; i < len; ++i) {
        const double d = x[base + i] - mean;
        sq += d * d;
      }
      const double var = len > 0 ? sq / static_cast<double>(len) : 0.0;
      const double inv_std = 1.0 / std::sqrt(var + eps);
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
        const int64_t off = (n * s.channels + c) * s.spatial;
        for (int64_t i = 0; i < s.spatial; ++i) {
          const double v = (x[off + i] - mean) * inv_std * scale[c] + bias[c] + (residual ? residual[off + i] : 0.0f);
          y[off + i] = ApplyActivation(act, static_cast<float>(v));
        }
      }
    }
  }
}

void LayerNormReference(int64_t rows, int64_t row_size, const float* x, const float* scale, const float* bias,
                        float eps, const Activation& act, float* y, float* mean, float* inv_std) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * row_size;
    double sum = 0.0;
    for (int64_t i = 0; i < row_size; ++i) sum += xr[i];
    const double m = row_size > 0 ? sum / static_cast<double>(row_size) : 0.0;
    double sq = 0.0;
    for (int64_t i = 0; i < row_size; ++i) sq += (xr[i] - m) * (xr[i] - m);
    const double is = 1.0 / std::sqrt((row_size > 0 ? sq / static_cast<double>(row_size) : 0.0) + eps);
    for (int64_t i = 0; i < row_size; ++i) {
      const double v = (xr[i] - m) * is * scale[i] + (bias ? bias[i] : 0.0f);
      y[r * row_size + i] = ApplyActivation(act, static_cast<float>(v));
    }
    if (mean) mean[r] = static_cast<float>(m);
    if (inv_std) inv_std[r] = static_cast<float>(is);
  }
}

void BatchNormReference(int64_t batch, int64_t channels, int64_t spatial, const float* x, const float* scale,
                        const float* bias, const float* mean, const float* var, float eps, float* y) {
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < channels; ++c) {
      const double is = 1.0 / std::sqrt(static_cast<double>(var[c]) + eps);
      const int64_t off = (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i)
        y[off + i] = static_cast<float>((x[off + i] - mean[c]) * is * scale[c] + bias[c]);
    }
}

}  // namespace itkit::cpu
