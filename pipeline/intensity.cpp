#include "intensity.h"

#include <cmath>
#include <mutex>
#include <vector>

namespace itkit::pipeline {

std::string IntensityTransform::Describe() const {
  if (mode == "window")
    return StrCat("window [", lo, ", ", hi, "] -> [0, 1]");
  if (mode == "ct")
    return StrCat("ct clip [", lo, ", ", hi, "], mean ", shift, ", std ", divisor);
  return StrCat("zscore mean ", shift, ", std ", divisor);
}

Result<IntensityTransform> ResolveIntensity(const Normalization& model,
                                            std::optional<double> request_level,
                                            std::optional<double> request_width,
                                            std::string* note) {
  IntensityTransform t;
  t.mode = model.mode.empty() ? "window" : model.mode;
  const bool request_window = request_level.has_value() || request_width.has_value();
  if (t.mode == "window") {
    const std::optional<double> wl = request_level ? request_level : model.window_level;
    const std::optional<double> ww = request_width ? request_width : model.window_width;
    if (!wl || !ww)
      return InvalidArgument("window_level/window_width required: give them in the request or in the "
                             "model's metadata (missing: ",
                             !wl ? "window_level" : "", !wl && !ww ? ", " : "", !ww ? "window_width" : "", ")");
    if (!std::isfinite(*wl) || !std::isfinite(*ww) || !(*ww > 0))
      return InvalidArgument("window_width must be a positive number and window_level finite (got WL ",
                             *wl, ", WW ", *ww, ")");
    // float32 bounds computed from double, as numpy does with Python floats.
    t.lo = static_cast<float>(*wl - *ww / 2.0);
    t.hi = static_cast<float>(*wl + *ww / 2.0);
    t.shift = t.lo;
    t.divisor = static_cast<float>(*ww);
    return t;
  }
  if (request_window && note != nullptr)
    *note = "request window_level/window_width ignored: the model normalises with mode '" + t.mode + "'";
  if (t.mode == "ct") {
    if (!model.clip_low || !model.clip_high || !model.mean || !model.std)
      return InvalidArgument("normalization mode 'ct' needs clip [lo, hi], mean and std");
    if (!(*model.clip_low <= *model.clip_high))
      return InvalidArgument("normalization.clip: low ", *model.clip_low, " > high ", *model.clip_high);
    if (!(*model.std > 0)) return InvalidArgument("normalization.std must be positive");
    t.lo = static_cast<float>(*model.clip_low);
    t.hi = static_cast<float>(*model.clip_high);
    t.shift = static_cast<float>(*model.mean);
    t.divisor = static_cast<float>(*model.std);
    return t;
  }
  if (t.mode == "zscore") {
    t.clip = false;
    t.needs_image_stats = true;
    return t;
  }
  return InvalidArgument("normalization.mode '", t.mode, "' is not one of window, ct, zscore");
}

void FitZScore(IntensityTransform* t, const float* data, int64_t n, ThreadPool* pool) {
  std::mutex mu;
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  // Two passes (mean, then squared deviations) for accuracy on large volumes.
  ParallelFor(pool, n, 1 << 16, [&](int64_t b, int64_t e) {
    double s = 0;
    int64_t c = 0;
    for (int64_t i = b; i < e; ++i)
      if (std::isfinite(data[i])) { s += data[i]; ++c; }
    std::lock_guard<std::mutex> lock(mu);
    sum += s;
    count += c;
  });
  const double mean = count > 0 ? sum / static_cast<double>(count) : 0.0;
  ParallelFor(pool, n, 1 << 16, [&](int64_t b, int64_t e) {
    double s = 0;
    for (int64_t i = b; i < e; ++i)
      if (std::isfinite(data[i])) { const double d = data[i] - mean; s += d * d; }
    std::lock_guard<std::mutex> lock(mu);
    sum_sq += s;
  });
  const double sd = count > 0 ? std::sqrt(sum_sq / static_cast<double>(count)) : 1.0;
  t->shift = static_cast<float>(mean);
  t->divisor = static_cast<float>(std::max(sd, 1e-8));  // nnU-Net's floor for flat images
  t->needs_image_stats = false;
}

void ApplyIntensity(const IntensityTransform& t, float* data, int64_t n, ThreadPool* pool) {
  ParallelFor(pool, n, 1 << 16, [&](int64_t b, int64_t e) {
    if (t.clip) {
      for (int64_t i = b; i < e; ++i) data[i] = (std::min(std::max(data[i], t.lo), t.hi) - t.shift) / t.divisor;
    } else {
      for (int64_t i = b; i < e; ++i) data[i] = (data[i] - t.shift) / t.divisor;
    }
  });
}

}  // namespace itkit::pipeline
