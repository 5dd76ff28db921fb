// Per-label statistics of a label map against the input intensities (channel 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "itkit/pipeline.h"
#include "itkit/thread_pool.h"

namespace itkit::pipeline {

// One entry per class 0..classes-1 (empty labels included, with voxels = 0);
// intensities that are not finite are counted but left out of mean/min/max.
template <typename L, typename I>
std::vector<LabelStats> ComputeLabelStats(const L* labels, const I* intensity, int64_t voxels, int classes,
                                          double voxel_volume_mm3, const std::vector<LabelInfo>& names,
                                          ThreadPool* pool) {
  struct Acc {
    int64_t count = 0, finite = 0;
    double sum = 0;
    double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
  };
  std::vector<Acc> total(static_cast<size_t>(classes));
  std::mutex mu;
  ParallelFor(pool, voxels, 1 << 16, [&](int64_t b, int64_t e) {
    std::vector<Acc> local(static_cast<size_t>(classes));
    for (int64_t i = b; i < e; ++i) {
      const auto l = static_cast<size_t>(labels[i]);
      if (l >= local.size()) continue;
      Acc& a = local[l];
      ++a.count;
      const double v = static_cast<double>(static_cast<float>(intensity[i]));  // as read into float
      if (!std::isfinite(v)) continue;
      ++a.finite;
      a.sum += v;
      a.min = std::min(a.min, v);
      a.max = std::max(a.max, v);
    }
    std::lock_guard<std::mutex> lock(mu);
    for (size_t c = 0; c < local.size(); ++c) {
      total[c].count += local[c].count;
      total[c].finite += local[c].finite;
      total[c].sum += local[c].sum;
      total[c].min = std::min(total[c].min, local[c].min);
      total[c].max = std::max(total[c].max, local[c].max);
    }
  });
  std::vector<LabelStats> out;
  for (int c = 0; c < classes; ++c) {
    const Acc& a = total[static_cast<size_t>(c)];
    LabelStats s;
    s.label = c;
    s.name = c < static_cast<int>(names.size()) ? names[static_cast<size_t>(c)].name : "label_" + std::to_string(c);
    s.voxels = a.count;
    s.volume_mm3 = static_cast<double>(a.count) * voxel_volume_mm3;
    if (a.finite > 0) {
      s.mean = a.sum / static_cast<double>(a.finite);
      s.min = a.min;
      s.max = a.max;
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace itkit::pipeline
