// Which z slices of a sliding-window sum the GPU accumulator holds when it keeps only
// a ring of them (labels-only accumulation, itkit/cuda_accumulator.h): slice z lives in
// slot z % depth, and a slice becomes labels (and its slot is zeroed for reuse) as soon
// as a window starts above it, since windows arrive in non-decreasing z. Plain C++ so
// that the bookkeeping is tested on machines without a GPU (test_cuda_host.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/status.h"

namespace itkit::cuda {

// `count` slices from volume slice `z` on, held in slots [slot, slot + count).
struct SliceRun {
  int64_t z = 0;
  int64_t slot = 0;
  int64_t count = 0;
};

class SliceRing {
 public:
  // volume_depth slices in all, `depth` of them held at once (1 <= depth <= volume_depth).
  SliceRing(int64_t volume_depth, int64_t depth) : volume_depth_(volume_depth), depth_(depth) {}

  // A window covering [z_begin, z_end) (volume coordinates, may reach outside) is about
  // to be added: every slice below it is final. Returns those not yet finalised as at
  // most two runs (the ring wraps), to be turned into labels and zeroed before the
  // window is added. InvalidArgument when the window starts below a finalised slice
  // (windows out of order) or is deeper than the ring.
  Result<std::vector<SliceRun>> Admit(int64_t z_begin, int64_t z_end);
  // The slices not yet finalised, at the end of a volume.
  std::vector<SliceRun> Finish() { return Advance(volume_depth_); }
  void Reset() { frontier_ = 0; }

  int64_t frontier() const { return frontier_; }  // slices below are final
  int64_t depth() const { return depth_; }
  int64_t SlotOf(int64_t z) const { return z % depth_; }

 private:
  std::vector<SliceRun> Advance(int64_t to);

  int64_t volume_depth_, depth_;
  int64_t frontier_ = 0;
};

}  // namespace itkit::cuda
