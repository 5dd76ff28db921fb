// Intensity normalisation before the network: ITKIT's window (clip to WL ± WW/2, scale
// to [0, 1]), nnU-Net's CT normalisation (clip, subtract mean, divide by std), or a
// per-image z-score. All compute y = (clip(x) - shift) / divisor in float32, the
// order of operations ITKIT's numpy code uses, so results match it bit for bit.
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include "itkit/pipeline.h"
#include "itkit/thread_pool.h"

namespace itkit::pipeline {

struct IntensityTransform {
  std::string mode = "window";  // "window" | "ct" | "zscore"
  bool clip = true;
  float lo = 0, hi = 0;        // clip bounds
  float shift = 0, divisor = 1;
  bool needs_image_stats = false;  // zscore: shift/divisor come from the image

  float operator()(float x) const {
    if (clip) x = std::min(std::max(x, lo), hi);
    return (x - shift) / divisor;
  }
  std::string Describe() const;
};

// Request window (level and width) over the model's; a mode other than "window"
// ignores a request window (and says so in *note). Errors name the missing field.
Result<IntensityTransform> ResolveIntensity(const Normalization& model,
                                            std::optional<double> request_level,
                                            std::optional<double> request_width,
                                            std::string* note);

// Fills a z-score transform's mean/std from the image (double accumulation).
void FitZScore(IntensityTransform* t, const float* data, int64_t n, ThreadPool* pool);

void ApplyIntensity(const IntensityTransform& t, float* data, int64_t n, ThreadPool* pool);

}  // namespace itkit::pipeline
