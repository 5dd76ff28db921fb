// Host accumulation.
//  * The count (or Gaussian weight sum) per voxel is the product of three per-axis
//    vectors because the windows form a grid: no count volume is kept, and the
//    argmax needs no division (the factor is the same positive number for every
//    class of a voxel).
//  * Without keep_averages only a ring of patch-deep z slices is held; a slice is
//    turned into labels (written straight into the target grid) once the windows
//    have moved past it. For a 512x512x320 CT and a 96 patch that is 3x less memory
//    to fault in than the whole volume, and the argmax runs while the slab is warm.
#include <algorithm>
#include <cstring>

#include "accumulator.h"
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

constexpr int64_t kPrefetchRows = 4;

void Prefetch(const float* row, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(row + i, 1, 3);
}

class HostAccumulator final : public Accumulator {
 public:
  HostAccumulator(const AccumulatorSpec& spec, ThreadPool* pool, Buffer<float> sums, int64_t ring)
      : spec_(spec), pool_(pool), sums_(std::move(sums)), ring_(ring) {}

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
      if (!spec_.keep_averages) Finalize(starts[w][0]);  // slices below are complete
      AddWindow(logits.data<float>() + static_cast<int64_t>(w) * window, starts[w]);
    }
    return Status::Ok();
  }

  Status Finish() override {
    Finalize(spec_.grid[0]);
    return Status::Ok();
  }

  Status Averaged(float* out) override {
    if (!spec_.keep_averages) return Internal("accumulator: averages were not kept");
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    const int64_t rows = spec_.classes * cs[0] * cs[1];
    ParallelFor(pool_, rows, 16, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t c = r / (cs[0] * cs[1]), z = (r / cs[1]) % cs[0], y = r % cs[1];
        const int64_t gz = cb[0] + z, gy = cb[1] + y;
        const float czy = spec_.coverage[0][static_cast<size_t>(gz)] * spec_.coverage[1][static_cast<size_t>(gy)];
        const float* s = Row(c, gz, gy) + cb[2];
        const float* cx = spec_.coverage[2].data() + cb[2];
        float* d = out + r * cs[2];
        for (int64_t x = 0; x < cs[2]; ++x) d[x] = s[x] / (czy * cx[x]);
      }
    });
    return Status::Ok();
  }

 private:
  float* Row(int64_t c, int64_t z, int64_t y) {
    const Zyx& g = spec_.grid;
    return sums_.data() + ((c * ring_ + z % ring_) * g[1] + y) * g[2];
  }

  // Where, along axis a, the window starting at `s` first covers positions: before
  // it, the previous window on that axis did. A voxel is first reached by the window
  // whose three axes all cover it "fresh" (the lexicographically first covering
  // window of the grid); that window sets it, later ones add. So nothing needs
  // zeroing, neither the buffer nor reused ring slots.
  int64_t FreshFrom(size_t a, int64_t s) const {
    const auto& st = spec_.starts[a];
    const auto it = std::lower_bound(st.begin(), st.end(), s);
    return it == st.begin() ? s : std::max(s, *(it - 1) + spec_.patch[a]);
  }

  // One window: rows of (class, z) planes in parallel; a window covers each voxel
  // once, so rows never collide.
  void AddWindow(const float* src, const Zyx& start) {
    const Zyx& p = spec_.patch;
    const int64_t fz = FreshFrom(0, start[0]), fy = FreshFrom(1, start[1]), fx = FreshFrom(2, start[2]);
    ParallelFor(pool_, spec_.classes * p[0], 1, [&](int64_t b, int64_t e) {
      for (int64_t cz = b; cz < e; ++cz) {
        const int64_t c = cz / p[0], z = cz % p[0];
        for (int64_t y = 0; y < p[1]; ++y) {
          float* d = Row(c, start[0] + z, start[1] + y) + start[2];
          const float* s = src + (cz * p[1] + y) * p[2];
          // Rows are a grid row apart: the hardware prefetcher does not follow them,
          // and waiting for each row's lines made this loop latency-bound (~2x).
          if (y + kPrefetchRows < p[1]) Prefetch(d + kPrefetchRows * spec_.grid[2], p[2]);
          // [0, split) was reached before: add; [split, patch) is new: set.
          const bool fresh_row = start[0] + z >= fz && start[1] + y >= fy;
          const int64_t split = fresh_row ? fx - start[2] : p[2];
          if (!spec_.gaussian) {
            AddRow(d, s, split);
            std::memcpy(d + split, s + split, static_cast<size_t>(p[2] - split) * sizeof(float));
          } else {
            const float wzy = spec_.weights[0][static_cast<size_t>(z)] * spec_.weights[1][static_cast<size_t>(y)];
            const float* wx = spec_.weights[2].data();
            AddRowWeighted(d, s, wx, wzy, split);
            SetRowWeighted(d + split, s + split, wx + split, wzy, p[2] - split);
          }
        }
      }
    });
  }

  // Labels for grid slices [done_, end); their ring slots are then free for reuse.
  void Finalize(int64_t end) {
    end = std::min(end, spec_.grid[0]);
    if (end <= done_) return;
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    const int64_t z0 = std::max(done_, cb[0]), z1 = std::min(end, cb[0] + cs[0]);
    if (z1 > z0) {
      if (spec_.target.wide) {
        Labels(static_cast<uint16_t*>(spec_.target.data), z0, z1);
      } else {
        Labels(static_cast<uint8_t*>(spec_.target.data), z0, z1);
      }
    }
    done_ = end;
  }

  template <typename T>
  void Labels(T* target, int64_t z0, int64_t z1) {
    const Zyx& cb = spec_.crop_begin;
    const Zyx& cs = spec_.crop_size;
    const int64_t nx = cs[2], ny = cs[1];
    const auto& t = spec_.target;
    ParallelFor(pool_, (z1 - z0) * ny, 8, [&](int64_t b, int64_t e) {
      std::vector<float> best(static_cast<size_t>(nx));
      std::vector<T> arg(static_cast<size_t>(nx));
      for (int64_t r = b; r < e; ++r) {
        const int64_t gz = z0 + r / ny, y = r % ny, gy = cb[1] + y;
        std::memcpy(best.data(), Row(0, gz, gy) + cb[2], static_cast<size_t>(nx) * sizeof(float));
        std::fill(arg.begin(), arg.end(), T{0});
        for (int c = 1; c < spec_.classes; ++c) ArgmaxStep(best.data(), arg.data(), Row(c, gz, gy) + cb[2], c, nx);
        T* d = target + t.offset + y * t.strides[1] + (gz - cb[0]) * t.strides[2];
        if (t.strides[0] == 1) {
          std::memcpy(d, arg.data(), static_cast<size_t>(nx) * sizeof(T));
        } else {
          for (int64_t x = 0; x < nx; ++x) d[x * t.strides[0]] = arg[static_cast<size_t>(x)];
        }
      }
    });
  }

  AccumulatorSpec spec_;
  ThreadPool* pool_;
  Buffer<float> sums_;
  int64_t ring_;      // z slots held: the whole grid, or the patch depth
  int64_t done_ = 0;  // grid slices below this are labelled
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

Result<std::unique_ptr<Accumulator>> CreateCudaAccumulator(const AccumulatorSpec&) {
  return Unavailable("CUDA accumulation is not built yet");
}

}  // namespace itkit::pipeline
