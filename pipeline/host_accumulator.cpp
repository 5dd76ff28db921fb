// Host accumulation.
//  * The count (or Gaussian weight sum) per voxel is the product of three per-axis
//    vectors because the windows form a grid: no count volume is kept, and the
//    argmax needs no division (the factor is the same positive number for every
//    class of a voxel).
//  * Without keep_averages only a ring of patch-deep z slices is held, and the last
//    window covering a voxel turns it into a label (written straight into the target
//    grid) instead of storing its sum. For a 512x512x320 CT and a 96 patch the ring
//    is 3x less memory to fault in than the whole volume.
//  * The sums are stored block by block (BlockGrid: the y/x plane cut at every
//    window start and end), so a window adds into a few long contiguous runs.
#include <algorithm>
#include <cstring>

#include "accumulator.h"
#include "block_grid.h"
#include "volume.h"

namespace itkit::pipeline {
namespace {

// The hot loops, compiled for AVX-512/AVX2 as well and picked at run time.
#define ITKIT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

ITKIT_CLONES void AddRow(float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t x = 0; x < n; ++x) d[x] += s[x];
}

// Same float32 product order as the reference: s * ((wz * wy) * wx).
ITKIT_CLONES void AddRowWeighted(float* __restrict d, const float* __restrict s, const float* __restrict wx,
                                 float wzy, int64_t n) {
  for (int64_t x = 0; x < n; ++x) d[x] += s[x] * (wzy * wx[x]);
}

ITKIT_CLONES void SetRowWeighted(float* __restrict d, const float* __restrict s, const float* __restrict wx,
                                 float wzy, int64_t n) {
  for (int64_t x = 0; x < n; ++x) d[x] = s[x] * (wzy * wx[x]);
}

// A window's last addition into a scratch row instead of the sums (rounded as above).
ITKIT_CLONES void SumRow(float* __restrict t, const float* __restrict d, const float* __restrict s, int64_t n) {
  for (int64_t x = 0; x < n; ++x) t[x] = d[x] + s[x];
}

ITKIT_CLONES void SumRowWeighted(float* __restrict t, const float* __restrict d, const float* __restrict s,
                                 const float* __restrict wx, float wzy, int64_t n) {
  for (int64_t x = 0; x < n; ++x) t[x] = d[x] + s[x] * (wzy * wx[x]);
}

// One class of the running argmax; strict '>' keeps the first maximum.
ITKIT_CLONES void ArgmaxStep8(float* __restrict best, uint8_t* __restrict arg, const float* __restrict s,
                              uint8_t c, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const bool g = s[x] > best[x];
    best[x] = g ? s[x] : best[x];
    arg[x] = g ? c : arg[x];
  }
}

ITKIT_CLONES void ArgmaxStep16(float* __restrict best, uint16_t* __restrict arg, const float* __restrict s,
                               uint16_t c, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const bool g = s[x] > best[x];
    best[x] = g ? s[x] : best[x];
    arg[x] = g ? c : arg[x];
  }
}

void ArgmaxStep(float* best, uint8_t* arg, const float* s, int c, int64_t n) {
  ArgmaxStep8(best, arg, s, static_cast<uint8_t>(c), n);
}
void ArgmaxStep(float* best, uint16_t* arg, const float* s, int c, int64_t n) {
  ArgmaxStep16(best, arg, s, static_cast<uint16_t>(c), n);
}

// z slices per task of one window: a 96-deep window of 3 classes over 2x2 blocks
// gives 72 tasks, enough to balance threads, each a run of 16 whole block planes.
constexpr int64_t kZChunk = 16;

class HostAccumulator final : public Accumulator {
 public:
  HostAccumulator(const AccumulatorSpec& spec, ThreadPool* pool, Buffer<float> sums, int64_t ring)
      : spec_(spec), pool_(pool), sums_(std::move(sums)), ring_(ring),
        blocks_(spec.starts, spec.patch, spec.grid, ring), class_stride_(blocks_.volume()) {
    for (size_t xs = 0; xs < blocks_.blocks(1); ++xs) max_width_ = std::max(max_width_, blocks_.width(xs));
  }

  std::string device() const override { return "cpu"; }

  Status Add(const Tensor& logits, const std::vector<Zyx>& starts) override {
    if (logits.device() != DeviceKind::kCpu || logits.dtype() != DType::kF32)
      return Internal("host accumulator needs float32 host logits");
    const Zyx& p = spec_.patch;
    const int64_t window = spec_.classes * p[0] * p[1] * p[2];
    if (logits.rank() != 5 || logits.size() < window * static_cast<int64_t>(starts.size()))
      return Internal("accumulator: logits ", ShapeToString(logits.shape()), " for ", starts.size(), " windows");
    for (size_t w = 0; w < starts.size(); ++w) {
      if (starts[w][0] < done_) return Internal("accumulator: windows out of z order");
      done_ = starts[w][0];  // slices below are labelled; their ring slots are free
      AddWindow(logits.data<float>() + static_cast<int64_t>(w) * window, starts[w]);
    }
    return Status::Ok();
  }

  Status Finish() override {
    // Without keep_averages every voxel was labelled by its last window already.
    if (spec_.keep_averages) {
      const int64_t z0 = spec_.crop_begin[0], z1 = z0 + spec_.crop_size[0];
      if (spec_.target.wide) {
        Labels<uint16_t>(z0, z1);
      } else {
        Labels<uint8_t>(z0, z1);
      }
    }
    done_ = spec_.grid[0];
    return Status::Ok();
  }

  Status Averaged(float* out) override {
    if (!spec_.keep_averages) return Internal("accumulator: averages were not kept");
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    ParallelFor(pool_, spec_.classes * cs[0], 1, [&](int64_t b, int64_t e) {
      for (int64_t cz = b; cz < e; ++cz) {
        const int64_t c = cz / cs[0], gz = cb[0] + cz % cs[0];
        ForCropRows(gz, 0, blocks_.blocks(0), [&](int64_t gy, int64_t gx, int64_t n, const float* s) {
          const float czy = spec_.coverage[0][static_cast<size_t>(gz)] * spec_.coverage[1][static_cast<size_t>(gy)];
          const float* cx = spec_.coverage[2].data() + gx;
          s += c * class_stride_;
          float* d = out + ((cz * cs[1]) + gy - cb[1]) * cs[2] + gx - cb[2];
          for (int64_t x = 0; x < n; ++x) d[x] = s[x] / (czy * cx[x]);
        });
      }
    });
    return Status::Ok();
  }

 private:
  // Calls f(gy, gx, n, class-0 sums) for every crop row piece of grid slice gz in
  // block rows [ys0, ys1): n voxels from grid (gz, gy, gx) on.
  template <typename F>
  void ForCropRows(int64_t gz, size_t ys0, size_t ys1, F&& f) const {
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    for (size_t ys = ys0; ys < ys1; ++ys) {
      const int64_t y0 = blocks_.y0(ys), h = blocks_.height(ys);
      const int64_t ya = std::max(y0, cb[1]), yb = std::min(y0 + h, cb[1] + cs[1]);
      for (size_t xs = 0; xs < blocks_.blocks(1); ++xs) {
        const int64_t x0 = blocks_.x0(xs), w = blocks_.width(xs);
        const int64_t xa = std::max(x0, cb[2]), xb = std::min(x0 + w, cb[2] + cs[2]);
        if (xa >= xb) continue;
        const float* plane = sums_.data() + blocks_.offset(ys, xs) + (gz % ring_) * h * w;
        for (int64_t gy = ya; gy < yb; ++gy) f(gy, xa, xb - xa, plane + (gy - y0) * w + (xa - x0));
      }
    }
  }

  // Where, along axis a, the window starting at `s` first covers positions: before
  // it, the previous window on that axis did. A voxel is first reached by the window
  // whose three axes all cover it "fresh" (the lexicographically first covering
  // window of the grid); that window sets it, later ones add. So nothing needs
  // zeroing, neither the buffer nor reused ring slots. Fresh bounds are window ends,
  // hence block bounds: a block is fresh or not as a whole along y and x.
  int64_t FreshFrom(size_t a, int64_t s) const {
    const auto& st = spec_.starts[a];
    const auto it = std::lower_bound(st.begin(), st.end(), s);
    return it == st.begin() ? s : std::max(s, *(it - 1) + spec_.patch[a]);
  }

  // Where, along axis a, positions stop being final for the window starting at `s`:
  // from the next window's start on, a later window covers them. Window starts are
  // block bounds, so a block is final or not as a whole along y and x.
  int64_t FinalBefore(size_t a, int64_t s) const {
    const auto& st = spec_.starts[a];
    const auto it = std::upper_bound(st.begin(), st.end(), s);
    return it == st.end() ? s + spec_.patch[a] : std::min(*it, s + spec_.patch[a]);
  }

  // One window, in tasks of (class, y block, x block, kZChunk slices); tasks never
  // share a voxel. Per block the sums run contiguously through z, y, x, and the
  // window's rows are read in order. Without keep_averages, the voxels this window
  // is the last to cover (final on all three axes) are not stored: tasks of (y block,
  // x block, kZChunk slices) take all classes at once and write their labels, so the
  // sums are neither written nor read back for an argmax pass. (Adding two
  // neighbouring windows in one pass, to halve the sums traffic, was tried: the held
  // window's logits then come back from memory instead of cache, and holding them
  // defeats malloc's reuse of the network's output buffers; no gain.)
  void AddWindow(const float* src, const Zyx& start) {
    const Zyx& p = spec_.patch;
    const int64_t fz = FreshFrom(0, start[0]), fy = FreshFrom(1, start[1]), fx = FreshFrom(2, start[2]);
    const auto [ys0, ys1] = blocks_.Range(0, start[1], start[1] + p[1]);
    const auto [xs0, xs1] = blocks_.Range(1, start[2], start[2] + p[2]);
    const bool fuse = !spec_.keep_averages;
    const int64_t zf = fuse ? FinalBefore(0, start[0]) - start[0] : 0;  // final slices: [0, zf) of the window
    const size_t ysf = fuse ? blocks_.Range(0, start[1], FinalBefore(1, start[1])).second : ys0;
    const size_t xsf = fuse ? blocks_.Range(1, start[2], FinalBefore(2, start[2])).second : xs0;
    const auto nyb = static_cast<int64_t>(ys1 - ys0), nxb = static_cast<int64_t>(xs1 - xs0);
    const auto nyf = static_cast<int64_t>(ysf - ys0), nxf = static_cast<int64_t>(xsf - xs0);
    const int64_t nzc = (p[0] + kZChunk - 1) / kZChunk, nzf = (zf + kZChunk - 1) / kZChunk;
    // The final tasks (all classes each) first, so that the light ones balance them.
    const int64_t final_tasks = nyf * nxf * nzf;
    ParallelFor(pool_, final_tasks + spec_.classes * nyb * nxb * nzc, 1, [&](int64_t b, int64_t e) {
      for (int64_t task = b; task < e; ++task) {
        if (task < final_tasks) {
          const int64_t f = task, zc = f % nzf;
          const auto xs = xs0 + static_cast<size_t>((f / nzf) % nxf), ys = ys0 + static_cast<size_t>(f / (nzf * nxf));
          const int64_t z1 = std::min(zf, (zc + 1) * kZChunk);
          if (spec_.target.wide) {
            FinalRows<uint16_t>(src, start, ys, xs, zc * kZChunk, z1, fz, fy, fx);
          } else {
            FinalRows<uint8_t>(src, start, ys, xs, zc * kZChunk, z1, fz, fy, fx);
          }
          continue;
        }
        const int64_t t = task - final_tasks, zc = t % nzc;
        const auto xs = xs0 + static_cast<size_t>((t / nzc) % nxb);
        const auto ys = ys0 + static_cast<size_t>((t / (nzc * nxb)) % nyb);
        const int64_t c = t / (nzc * nxb * nyb);
        const int64_t y0 = blocks_.y0(ys), h = blocks_.height(ys), x0 = blocks_.x0(xs), w = blocks_.width(xs);
        const int64_t wy = y0 - start[1], wx = x0 - start[2];  // block origin in the window
        float* block = sums_.data() + c * class_stride_ + blocks_.offset(ys, xs);
        const bool fresh_yx = y0 >= fy && x0 >= fx;
        const bool final_yx = ys < ysf && xs < xsf;
        const float* wxs = spec_.gaussian ? spec_.weights[2].data() + wx : nullptr;
        for (int64_t z = std::max(zc * kZChunk, final_yx ? zf : 0); z < std::min(p[0], (zc + 1) * kZChunk); ++z) {
          float* d = block + ((start[0] + z) % ring_) * h * w;
          const float* s = src + ((c * p[0] + z) * p[1] + wy) * p[2] + wx;
          const bool fresh = fresh_yx && start[0] + z >= fz;
          for (int64_t y = 0; y < h; ++y, d += w, s += p[2]) {
            if (!spec_.gaussian) {
              if (fresh) {
                std::memcpy(d, s, static_cast<size_t>(w) * sizeof(float));
              } else {
                AddRow(d, s, w);
              }
            } else {
              const float wzy = spec_.weights[0][static_cast<size_t>(z)] * spec_.weights[1][static_cast<size_t>(wy + y)];
              fresh ? SetRowWeighted(d, s, wxs, wzy, w) : AddRowWeighted(d, s, wxs, wzy, w);
            }
          }
        }
      }
    });
  }

  // Window slices [z0, z1) of block (ys, xs), which this window covers last: each
  // class's total (the sums plus this window, as AddWindow would store it) feeds the
  // running argmax, and the crop's rows go to the target.
  template <typename T>
  void FinalRows(const float* src, const Zyx& start, size_t ys, size_t xs, int64_t z0, int64_t z1, int64_t fz,
                 int64_t fy, int64_t fx) {
    const Zyx& p = spec_.patch;
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    const int64_t y0 = blocks_.y0(ys), h = blocks_.height(ys), x0 = blocks_.x0(xs), w = blocks_.width(xs);
    const int64_t wy = y0 - start[1], wx = x0 - start[2];
    const int64_t xa = std::max(x0, cb[2]), xb = std::min(x0 + w, cb[2] + cs[2]);
    const float* block = sums_.data() + blocks_.offset(ys, xs);
    const float* wxs = spec_.gaussian ? spec_.weights[2].data() + wx : nullptr;
    std::vector<float> best(static_cast<size_t>(w)), scratch(static_cast<size_t>(w));
    std::vector<T> arg(static_cast<size_t>(w));
    for (int64_t z = z0; z < z1; ++z) {
      const int64_t gz = start[0] + z;
      if (gz < cb[0] || gz >= cb[0] + cs[0] || xa >= xb) continue;  // padding: no label
      const bool fresh_z = y0 >= fy && x0 >= fx && gz >= fz;
      for (int64_t y = 0; y < h; ++y) {
        const int64_t gy = y0 + y;
        if (gy < cb[1] || gy >= cb[1] + cs[1]) continue;
        const float wzy = spec_.gaussian
                              ? spec_.weights[0][static_cast<size_t>(z)] * spec_.weights[1][static_cast<size_t>(wy + y)]
                              : 0.0f;
        for (int c = 0; c < spec_.classes; ++c) {
          const float* d = block + c * class_stride_ + ((gz % ring_) * h + y) * w;
          const float* s = src + ((c * p[0] + z) * p[1] + wy + y) * p[2] + wx;
          const float* total = scratch.data();
          if (!spec_.gaussian) {
            if (fresh_z) {
              total = s;
            } else {
              SumRow(scratch.data(), d, s, w);
            }
          } else if (fresh_z) {
            SetRowWeighted(scratch.data(), s, wxs, wzy, w);
          } else {
            SumRowWeighted(scratch.data(), d, s, wxs, wzy, w);
          }
          if (c == 0) {
            std::memcpy(best.data(), total, static_cast<size_t>(w) * sizeof(float));
            std::fill(arg.begin(), arg.end(), T{0});
          } else {
            ArgmaxStep(best.data(), arg.data(), total, c, w);
          }
        }
        WriteLabels(gz, gy, xa, xb - xa, arg.data() + (xa - x0));
      }
    }
  }

  // n labels of grid row (gz, gy) from gx on into the target.
  template <typename T>
  void WriteLabels(int64_t gz, int64_t gy, int64_t gx, int64_t n, const T* labels) {
    WriteLabelRow(spec_.target, spec_.crop_begin, gz, gy, gx, n, labels);
  }

  // Labels of the kept sums for crop slices [z0, z1) (keep_averages).
  template <typename T>
  void Labels(int64_t z0, int64_t z1) {
    const auto nyb = static_cast<int64_t>(blocks_.blocks(0));
    ParallelFor(pool_, (z1 - z0) * nyb, 4, [&](int64_t b, int64_t e) {
      std::vector<float> best(static_cast<size_t>(max_width_));
      std::vector<T> arg(static_cast<size_t>(max_width_));
      for (int64_t r = b; r < e; ++r) {
        const int64_t gz = z0 + r / nyb;
        const auto ys = static_cast<size_t>(r % nyb);
        ForCropRows(gz, ys, ys + 1, [&](int64_t gy, int64_t gx, int64_t n, const float* s) {
          std::memcpy(best.data(), s, static_cast<size_t>(n) * sizeof(float));
          std::fill_n(arg.begin(), n, T{0});
          for (int c = 1; c < spec_.classes; ++c) ArgmaxStep(best.data(), arg.data(), s + c * class_stride_, c, n);
          WriteLabels(gz, gy, gx, n, arg.data());
        });
      }
    });
  }

  AccumulatorSpec spec_;
  ThreadPool* pool_;
  Buffer<float> sums_;  // (class, block, ring slot, y, x): see BlockGrid
  int64_t ring_;        // z slots held: the whole grid, or the patch depth
  BlockGrid blocks_;
  int64_t class_stride_;
  int64_t max_width_ = 1;
  int64_t done_ = 0;  // windows start at or after this slice
};

}  // namespace

Result<std::unique_ptr<Accumulator>> CreateHostAccumulator(const AccumulatorSpec& spec, ThreadPool* pool) {
  const Zyx& g = spec.grid;
  if (spec.classes <= 0) return Internal("accumulator without classes");
  if (spec.target.data == nullptr) return Internal("accumulator without a label target");
  for (size_t a = 0; a < 3; ++a)
    if (spec.starts[a].empty() || spec.starts[a].back() + spec.patch[a] != g[a])
      return Internal("accumulator: window starts do not tile the grid");
  const int64_t ring = spec.keep_averages ? g[0] : std::min(g[0], spec.patch[0]);
  ITKIT_ASSIGN_OR_RETURN(Buffer<float> sums,
                         Buffer<float>::Allocate(spec.classes * ring * g[1] * g[2]));
  return std::unique_ptr<Accumulator>(new HostAccumulator(spec, pool, std::move(sums), ring));
}

}  // namespace itkit::pipeline
