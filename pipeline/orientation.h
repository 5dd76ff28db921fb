// Reorientation as SimpleITK's DICOMOrient does it: an axis permutation plus flips,
// so voxels are copied, never interpolated. Orientation codes name, per axis, the
// anatomical direction the axis increases *toward* (identity direction = "LPS";
// ITKIT's network orientation "LPI" = diag(1, 1, -1)).
#pragma once

#include <algorithm>
#include <array>
#include <string>

#include "block_grid.h"
#include "itkit/thread_pool.h"
#include "volume.h"

namespace itkit::pipeline {

// The code of a direction matrix; oblique axes go to the closest anatomical axis,
// greedily by the largest remaining |cosine| (DICOMOrientImageFilter's rule, ties
// included). Errors on a singular or non-finite matrix.
Result<std::string> OrientationOf(const std::array<double, 9>& direction);
// "LPI", "ras", ...: three letters, one of each of L/R, P/A, S/I (case-insensitive).
Result<std::string> NormalizeOrientationCode(const std::string& code);

// Output axis j is input axis order[j], reversed when flip[j].
struct AxisMap {
  std::array<int, 3> order{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  bool identity() const;
};

struct Reorientation {
  std::string from, to;
  AxisMap map;
  Geometry input;
  Geometry output;  // same voxels, permuted/flipped; same physical space
};

Result<Reorientation> PlanReorientation(const Geometry& input, const std::string& target);

// d[x] = f(s[x * sx]) for a source row that runs forwards (sx = 1) or backwards
// (sx = -1); the two loops stay separate so each vectorises.
template <typename S, typename D, typename F>
inline void GatherRow(const S* s, int64_t sx, D* d, int64_t n, F& f) {
  if (sx == 1) {
    for (int64_t x = 0; x < n; ++x) d[x] = f(s[x]);
  } else {
    for (int64_t x = 0; x < n; ++x) d[x] = f(s[-x]);
  }
}

// Copies dst[k] = f(src[offset + sum_j index_j(k) * strides[j]]) over the dst grid
// (x fastest), in parallel over z. Strides may be negative (flips). When the dst rows
// do not run along the source's rows (a permutation), 16^3 tiles keep every source
// cache line in use instead of touching one element per line.
template <typename S, typename D, typename F>
void StridedGather(const S* src, int64_t offset, const std::array<int64_t, 3>& strides, D* dst,
                   const std::array<int64_t, 3>& dst_size, ThreadPool* pool, F f) {
  const int64_t nx = dst_size[0], ny = dst_size[1], nz = dst_size[2];
  if (strides[0] == 1 || strides[0] == -1) {
    const int64_t sx = strides[0];
    ParallelFor(pool, nz * ny, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t z = r / ny, y = r % ny;
        GatherRow(src + offset + z * strides[2] + y * strides[1], sx, dst + r * nx, nx, f);
      }
    });
    return;
  }
  constexpr int64_t T = 16;
  const int64_t tz = (nz + T - 1) / T;
  ParallelFor(pool, tz, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t zt = t0 * T; zt < std::min(nz, t1 * T); zt += T)
      for (int64_t yt = 0; yt < ny; yt += T)
        for (int64_t xt = 0; xt < nx; xt += T)
          for (int64_t z = zt; z < std::min(nz, zt + T); ++z)
            for (int64_t y = yt; y < std::min(ny, yt + T); ++y) {
              const S* s = src + offset + z * strides[2] + y * strides[1];
              D* d = dst + (z * ny + y) * nx;
              for (int64_t x = xt; x < std::min(nx, xt + T); ++x) d[x] = f(s[x * strides[0]]);
            }
  });
}

// StridedGather into the block layout of `blocks` (dst grid: nz slices of the
// blocks' y/x plane), where the window extraction reads long contiguous runs. Rows
// along the source's rows are read whole and dealt out to the blocks (reading a block
// at a time would fetch short rows a source row apart, 3x slower); other orders go
// by 16^3 tiles within each block, as above.
template <typename S, typename D, typename F>
void StridedGatherBlocks(const S* src, int64_t offset, const std::array<int64_t, 3>& strides, D* dst,
                         const BlockGrid& blocks, int64_t nz, ThreadPool* pool, F f) {
  const auto nyb = static_cast<int64_t>(blocks.blocks(0)), nxb = static_cast<int64_t>(blocks.blocks(1));
  if (strides[0] == 1 || strides[0] == -1) {
    const int64_t sx = strides[0];
    ParallelFor(pool, nz * nyb, 4, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t z = t / nyb;
        const auto ys = static_cast<size_t>(t % nyb);
        const int64_t y0 = blocks.y0(ys), h = blocks.height(ys);
        for (int64_t y = 0; y < h; ++y) {
          const S* row = src + offset + z * strides[2] + (y0 + y) * strides[1];
          for (size_t xs = 0; xs < static_cast<size_t>(nxb); ++xs) {
            const int64_t w = blocks.width(xs);
            GatherRow(row + blocks.x0(xs) * sx, sx, dst + blocks.offset(ys, xs) + (z * h + y) * w, w, f);
          }
        }
      }
    });
    return;
  }
  constexpr int64_t T = 16;
  const int64_t nzc = (nz + T - 1) / T;
  ParallelFor(pool, nyb * nxb * nzc, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const auto ys = static_cast<size_t>(t / (nxb * nzc)), xs = static_cast<size_t>((t / nzc) % nxb);
      const int64_t z0 = (t % nzc) * T, z1 = std::min(nz, z0 + T);
      const int64_t y0 = blocks.y0(ys), h = blocks.height(ys), x0 = blocks.x0(xs), w = blocks.width(xs);
      D* block = dst + blocks.offset(ys, xs);
      for (int64_t yt = 0; yt < h; yt += T)
        for (int64_t xt = 0; xt < w; xt += T)
          for (int64_t z = z0; z < z1; ++z)
            for (int64_t y = yt; y < std::min(h, yt + T); ++y) {
              const S* s = src + offset + z * strides[2] + (y0 + y) * strides[1] + x0 * strides[0];
              D* d = block + (z * h + y) * w;
              for (int64_t x = xt; x < std::min(w, xt + T); ++x) d[x] = f(s[x * strides[0]]);
            }
    }
  });
}

// Offset and strides (in elements of the input grid) that StridedGather needs to
// produce the output grid, or the reverse (input grid from an output-grid buffer).
void ForwardStrides(const Reorientation& r, int64_t* offset, std::array<int64_t, 3>* strides);
void BackwardStrides(const Reorientation& r, int64_t* offset, std::array<int64_t, 3>* strides);

template <typename S, typename D, typename F>
void ReorientForward(const Reorientation& r, const S* src, D* dst, ThreadPool* pool, F f) {
  int64_t offset;
  std::array<int64_t, 3> strides;
  ForwardStrides(r, &offset, &strides);
  StridedGather(src, offset, strides, dst, r.output.size, pool, f);
}

template <typename S, typename D, typename F>
void ReorientForwardBlocks(const Reorientation& r, const S* src, D* dst, const BlockGrid& blocks, ThreadPool* pool,
                           F f) {
  int64_t offset;
  std::array<int64_t, 3> strides;
  ForwardStrides(r, &offset, &strides);
  StridedGatherBlocks(src, offset, strides, dst, blocks, r.output.size[2], pool, f);
}

template <typename S, typename D, typename F>
void ReorientBackward(const Reorientation& r, const S* src, D* dst, ThreadPool* pool, F f) {
  int64_t offset;
  std::array<int64_t, 3> strides;
  BackwardStrides(r, &offset, &strides);
  StridedGather(src, offset, strides, dst, r.input.size, pool, f);
}

}  // namespace itkit::pipeline
