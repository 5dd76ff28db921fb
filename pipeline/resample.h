// Resampling to the model's training spacing and back, on axis-aligned grids that
// share origin and direction (so only the spacing changes). Semantics match ITK's
// ResampleImageFilter with a nearest-neighbour extrapolator: output index k samples
// the input at continuous index k * new_spacing / old_spacing, clamped to the border.
#pragma once

#include <array>

#include "itkit/thread_pool.h"
#include "sliding_window.h"

namespace itkit::pipeline {

// Per axis: max(1, round(size * old_spacing / new_spacing)).
Zyx ResampledSize(const Zyx& size, const std::array<double, 3>& old_spacing_zyx,
                  const std::array<double, 3>& new_spacing_zyx);

// Trilinear, `channels` planes of (z, y, x).
void ResampleLinear(const float* src, int channels, const Zyx& src_size, float* dst, const Zyx& dst_size,
                    const std::array<double, 3>& scale_zyx, ThreadPool* pool);

// Nearest neighbour (ties rounded up, as ITK does).
template <typename T>
void ResampleNearest(const T* src, const Zyx& src_size, T* dst, const Zyx& dst_size,
                     const std::array<double, 3>& scale_zyx, ThreadPool* pool);

}  // namespace itkit::pipeline
