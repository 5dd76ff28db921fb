// The y/x plane of a sliding-window grid cut at every window start and end. Each
// window then covers whole blocks, and a volume stored block by block (block-major;
// z, y, x inside a block) gives every window a few long contiguous runs instead of
// thousands of short rows a grid row apart. The host accumulator was bound by the
// latency of those rows (one cache/TLB miss per 96-float row, ~90 ns each on a
// 512x512 plane); with blocks the same work streams at about twice the speed.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "sliding_window.h"

namespace itkit::pipeline {

class BlockGrid {
 public:
  BlockGrid() = default;
  // `starts` per axis (z, y, x) as in WindowPlan; `grid` = the padded size; `depth`
  // = the z extent each block stores (the grid depth, or a ring's).
  BlockGrid(const std::array<std::vector<int64_t>, 3>& starts, const Zyx& patch, const Zyx& grid, int64_t depth)
      : depth_(depth) {
    for (size_t a = 0; a < 2; ++a) {
      std::vector<int64_t>& b = bounds_[a];
      b = {0, grid[a + 1]};
      for (int64_t s : starts[a + 1]) {
        b.push_back(s);
        b.push_back(std::min(s + patch[a + 1], grid[a + 1]));
      }
      std::sort(b.begin(), b.end());
      b.erase(std::unique(b.begin(), b.end()), b.end());
    }
    const size_t ny = blocks(0), nx = blocks(1);
    area_before_.resize(ny * nx);
    int64_t area = 0;
    for (size_t ys = 0; ys < ny; ++ys)
      for (size_t xs = 0; xs < nx; ++xs) {
        area_before_[ys * nx + xs] = area;
        area += height(ys) * width(xs);
      }
    area_ = area;
  }

  size_t blocks(size_t axis) const { return bounds_[axis].size() - 1; }  // 0 = y, 1 = x
  int64_t y0(size_t ys) const { return bounds_[0][ys]; }
  int64_t x0(size_t xs) const { return bounds_[1][xs]; }
  int64_t height(size_t ys) const { return bounds_[0][ys + 1] - bounds_[0][ys]; }
  int64_t width(size_t xs) const { return bounds_[1][xs + 1] - bounds_[1][xs]; }
  // Elements before block (ys, xs); inside it, (z, y, x) is at z*h*w + y*w + x.
  int64_t offset(size_t ys, size_t xs) const { return depth_ * area_before_[ys * blocks(1) + xs]; }
  // Elements of one whole volume (depth x the plane).
  int64_t volume() const { return depth_ * area_; }
  // The blocks [first, last) whose span lies in [begin, end) along `axis`; for a
  // window's own span, exactly the blocks it covers.
  std::pair<size_t, size_t> Range(size_t axis, int64_t begin, int64_t end) const {
    const std::vector<int64_t>& b = bounds_[axis];
    const auto first = std::lower_bound(b.begin(), b.end(), begin) - b.begin();
    const auto last = std::upper_bound(b.begin(), b.end(), end) - b.begin() - 1;
    return {static_cast<size_t>(first), static_cast<size_t>(std::max(first, last))};
  }

 private:
  int64_t depth_ = 0, area_ = 0;
  std::array<std::vector<int64_t>, 2> bounds_;
  std::vector<int64_t> area_before_;
};

}  // namespace itkit::pipeline
