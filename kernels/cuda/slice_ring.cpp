#include "cuda/slice_ring.h"

#include <algorithm>

namespace itkit::cuda {

Result<std::vector<SliceRun>> SliceRing::Admit(int64_t z_begin, int64_t z_end) {
  const int64_t begin = std::clamp<int64_t>(z_begin, 0, volume_depth_);
  const int64_t end = std::clamp<int64_t>(z_end, 0, volume_depth_);
  if (end <= begin) return std::vector<SliceRun>{};  // nothing inside the volume
  if (begin < frontier_)
    return InvalidArgument("accumulator: a window starting at slice ", z_begin, " came after slice ", frontier_ - 1,
                           " was final (labels-only accumulation takes windows in non-decreasing z)");
  if (end - begin > depth_)
    return InvalidArgument("accumulator: a window of ", end - begin, " slices does not fit the ", depth_,
                           "-slice ring");
  return Advance(begin);
}

std::vector<SliceRun> SliceRing::Advance(int64_t to) {
  std::vector<SliceRun> runs;
  while (frontier_ < to) {
    const int64_t slot = SlotOf(frontier_);
    const int64_t count = std::min(to - frontier_, depth_ - slot);
    runs.push_back({frontier_, slot, count});
    frontier_ += count;
  }
  return runs;
}

}  // namespace itkit::cuda
