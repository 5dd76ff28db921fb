// CPU kernels of the pool family: MaxPool (+ Indices), AveragePool, GlobalAveragePool,
// GlobalMaxPool. Pools are a small share of segmentation networks' time, so the
// direct loops here are both the reference and the implementation: parallel over
// the N*C planes, with each axis' valid window taps precomputed so the inner loops
// carry no bounds checks.
#include <algorithm>
#include <array>
#include <limits>
#include <vector>

#include "shape_infer/window_geometry.h"
#include "cpu/cpu_ops.h"

namespace itkit::cpu {
namespace {

// Geometry with the spatial axes padded to 3 at the front (extent 1).
struct PoolGeometry {
  int64_t planes = 0;  // N * C
  std::array<int64_t, 3> in{1, 1, 1}, out{1, 1, 1}, kernel{1, 1, 1}, stride{1, 1, 1}, dilation{1, 1, 1};
  std::array<int64_t, 3> pad_begin{0, 0, 0}, pad_end{0, 0, 0};
  int64_t in_plane() const { return in[0] * in[1] * in[2]; }
  int64_t out_plane() const { return out[0] * out[1] * out[2]; }
};

// For one axis and output index: the taps [k_lo, k_hi) that land inside the input,
// and how many taps land inside the padded extent (AveragePool's count_include_pad).
struct AxisWindow {
  int64_t start = 0;  // input coordinate of tap 0
  int64_t k_lo = 0, k_hi = 0, padded_count = 0;
};

std::vector<AxisWindow> AxisWindows(const PoolGeometry& g, int axis) {
  const size_t a = static_cast<size_t>(axis);
  std::vector<AxisWindow> w(static_cast<size_t>(g.out[a]));
  for (int64_t o = 0; o < g.out[a]; ++o) {
    AxisWindow& aw = w[static_cast<size_t>(o)];
    aw.start = o * g.stride[a] - g.pad_begin[a];
    aw.k_lo = g.kernel[a];
    aw.k_hi = 0;
    for (int64_t k = 0; k < g.kernel[a]; ++k) {
      const int64_t i = aw.start + k * g.dilation[a];
      if (i >= 0 && i < g.in[a]) {
        aw.k_lo = std::min(aw.k_lo, k);
        aw.k_hi = std::max(aw.k_hi, k + 1);
      }
      // Taps beyond the end padding (ceil_mode windows) do not count even with
      // count_include_pad, as in PyTorch and ONNX Runtime.
      if (i >= -g.pad_begin[a] && i < g.in[a] + g.pad_end[a]) ++aw.padded_count;
    }
    if (aw.k_lo >= aw.k_hi) aw.k_lo = aw.k_hi = 0;
  }
  return w;
}

Result<PoolGeometry> MakeGeometry(const NodeSignature& sig) {
  const Shape& x = sig.inputs[0].shape;
  ITKIT_ASSIGN_OR_RETURN(shape_rules::WindowGeometry wg,
                         shape_rules::ComputeWindowGeometry(*sig.node, shape_rules::WindowOp::kPool, x, {}));
  if (wg.spatial > 3) return Unsupported(sig.node->Describe(), ": pooling over more than 3 spatial axes");
  PoolGeometry g;
  g.planes = x[0] * x[1];
  const int off = 3 - wg.spatial;
  for (int i = 0; i < wg.spatial; ++i) {
    const size_t s = static_cast<size_t>(i), d = static_cast<size_t>(i + off);
    g.in[d] = wg.in[s];
    g.out[d] = wg.out[s];
    g.kernel[d] = wg.kernel[s];
    g.stride[d] = wg.strides[s];
    g.dilation[d] = wg.dilations[s];
    g.pad_begin[d] = wg.pad_begin[s];
    g.pad_end[d] = wg.pad_end[s];
  }
  return g;
}

template <typename T>
Status RunMaxPool(const PoolGeometry& g, const std::array<std::vector<AxisWindow>, 3>& win, bool col_major,
                  KernelContext& ctx) {
  const T* x = ctx.inputs[0]->data<T>();
  T* y = ctx.outputs[0]->data<T>();
  int64_t* idx = ctx.outputs.size() > 1 && ctx.outputs[1] ? ctx.outputs[1]->data<int64_t>() : nullptr;
  const int64_t in_plane = g.in_plane(), out_plane = g.out_plane();
  ParallelFor(ctx.pool, g.planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* xp = x + p * in_plane;
      T* yp = y + p * out_plane;
      int64_t o = 0;
      for (const AxisWindow& wd : win[0])
        for (const AxisWindow& wh : win[1])
          for (const AxisWindow& ww : win[2]) {
            T best = std::numeric_limits<T>::lowest();
            int64_t best_d = -1, best_h = -1, best_w = -1;
            for (int64_t kd = wd.k_lo; kd < wd.k_hi; ++kd) {
              const int64_t id = wd.start + kd * g.dilation[0];
              for (int64_t kh = wh.k_lo; kh < wh.k_hi; ++kh) {
                const int64_t ih = wh.start + kh * g.dilation[1];
                const T* row = xp + (id * g.in[1] + ih) * g.in[2];
                for (int64_t kw = ww.k_lo; kw < ww.k_hi; ++kw) {
                  const int64_t iw = ww.start + kw * g.dilation[2];
                  // A NaN wins and stays (torch's max pooling); `v != v` is false for u8.
                  const T v = row[iw];
                  if (best_d < 0 || (best == best && (v > best || v != v))) {
                    best = row[iw];
                    best_d = id, best_h = ih, best_w = iw;
                  }
                }
              }
            }
            yp[o] = best;
            if (idx) {
              // Indices are flat over the whole input; storage_order 1 = column-major
              // within each plane (ONNX: "col major" over the spatial axes).
              const int64_t within = best_d < 0 ? 0
                                     : col_major ? (best_w * g.in[1] + best_h) * g.in[0] + best_d
                                                 : (best_d * g.in[1] + best_h) * g.in[2] + best_w;
              idx[p * out_plane + o] = p * in_plane + within;
            }
            ++o;
          }
    }
  });
  return Status::Ok();
}

Status RunAveragePool(const PoolGeometry& g, const std::array<std::vector<AxisWindow>, 3>& win,
                      bool count_include_pad, KernelContext& ctx) {
  const float* x = ctx.inputs[0]->data<float>();
  float* y = ctx.outputs[0]->data<float>();
  const int64_t in_plane = g.in_plane(), out_plane = g.out_plane();
  ParallelFor(ctx.pool, g.planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* xp = x + p * in_plane;
      float* yp = y + p * out_plane;
      int64_t o = 0;
      for (const AxisWindow& wd : win[0])
        for (const AxisWindow& wh : win[1])
          for (const AxisWindow& ww : win[2]) {
            float sum = 0.0f;
            for (int64_t kd = wd.k_lo; kd < wd.k_hi; ++kd) {
              const int64_t id = wd.start + kd * g.dilation[0];
              for (int64_t kh = wh.k_lo; kh < wh.k_hi; ++kh) {
                const float* row = xp + (id * g.in[1] + wh.start + kh * g.dilation[1]) * g.in[2];
                for (int64_t kw = ww.k_lo; kw < ww.k_hi; ++kw) sum += row[ww.start + kw * g.dilation[2]];
              }
            }
            // Taps inside the input (dilation may skip some within [k_lo, k_hi)).
            auto inside = [&](const AxisWindow& w, int axis) {
              int64_t c = 0;
              for (int64_t k = w.k_lo; k < w.k_hi; ++k) {
                const int64_t i = w.start + k * g.dilation[static_cast<size_t>(axis)];
                c += i >= 0 && i < g.in[static_cast<size_t>(axis)];
              }
              return c;
            };
            const int64_t count = count_include_pad ? wd.padded_count * wh.padded_count * ww.padded_count
                                                    : inside(wd, 0) * inside(wh, 1) * inside(ww, 2);
            yp[o++] = count > 0 ? sum / static_cast<float>(count) : 0.0f;
          }
    }
  });
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreateWindowPool(const NodeSignature& sig, bool is_max) {
  const Node& node = *sig.node;
  const DType dt = sig.inputs[0].dtype;
  if (dt != DType::kF32 && !(is_max && dt == DType::kU8))
    return Unsupported(node.Describe(), ": ", DTypeName(dt), " pooling is not supported on the CPU");
  ITKIT_ASSIGN_OR_RETURN(PoolGeometry g, MakeGeometry(sig));
  Shape expected = {sig.inputs[0].shape[0], sig.inputs[0].shape[1]};
  for (size_t i = 2; i < sig.inputs[0].shape.size(); ++i) expected.push_back(g.out[i - sig.inputs[0].shape.size() + 3]);
  if (expected != sig.outputs[0].shape) return Internal(node.Describe(), ": planned output shape differs");
  std::array<std::vector<AxisWindow>, 3> win = {AxisWindows(g, 0), AxisWindows(g, 1), AxisWindows(g, 2)};
  if (is_max) {
    const bool col_major = node.attrs.GetInt("storage_order", 0) == 1;
    if (dt == DType::kU8)
      return MakeKernel([g, win, col_major](KernelContext& ctx) { return RunMaxPool<uint8_t>(g, win, col_major, ctx); });
    return MakeKernel([g, win, col_major](KernelContext& ctx) { return RunMaxPool<float>(g, win, col_major, ctx); });
  }
  const bool include_pad = node.attrs.GetInt("count_include_pad", 0) != 0;
  return MakeKernel([g, win, include_pad](KernelContext& ctx) { return RunAveragePool(g, win, include_pad, ctx); });
}

Result<std::unique_ptr<OpKernel>> CreateMaxPool(const NodeSignature& sig) { return CreateWindowPool(sig, true); }
Result<std::unique_ptr<OpKernel>> CreateAveragePool(const NodeSignature& sig) { return CreateWindowPool(sig, false); }

Result<std::unique_ptr<OpKernel>> CreateGlobalPool(const NodeSignature& sig, bool is_max) {
  if (sig.inputs[0].dtype != DType::kF32)
    return Unsupported(sig.node->Describe(), ": ", DTypeName(sig.inputs[0].dtype), " pooling is not supported on the CPU");
  const Shape& x = sig.inputs[0].shape;
  const int64_t planes = x[0] * x[1];
  const int64_t plane = ElementCount(Shape(x.begin() + 2, x.end()));
  return MakeKernel([planes, plane, is_max](KernelContext& ctx) {
    const float* in = ctx.inputs[0]->data<float>();
    float* out = ctx.outputs[0]->data<float>();
    ParallelFor(ctx.pool, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const float* xp = in + p * plane;
        if (is_max) {
          float m = plane > 0 ? xp[0] : 0.0f;
          for (int64_t i = 1; i < plane && m == m; ++i) m = xp[i] > m || xp[i] != xp[i] ? xp[i] : m;  // NaN wins
          out[p] = m;
        } else {
          double s = 0.0;  // planes are large (128^3): accumulate in double
          for (int64_t i = 0; i < plane; ++i) s += xp[i];
          out[p] = plane > 0 ? static_cast<float>(s / static_cast<double>(plane)) : 0.0f;
        }
      }
    });
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateGlobalAveragePool(const NodeSignature& sig) { return CreateGlobalPool(sig, false); }
Result<std::unique_ptr<OpKernel>> CreateGlobalMaxPool(const NodeSignature& sig) { return CreateGlobalPool(sig, true); }

}  // namespace

void AppendPoolKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "MaxPool", CreateMaxPool});
  table.push_back({"", "AveragePool", CreateAveragePool});
  table.push_back({"", "GlobalAveragePool", CreateGlobalAveragePool});
  table.push_back({"", "GlobalMaxPool", CreateGlobalMaxPool});
}

}  // namespace itkit::cpu
