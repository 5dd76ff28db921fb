// CPU kernels of the resize family. The fast path precomputes every axis' taps once
// per run, then walks output rows (all axes but the last) in parallel: the outer
// axes' taps combine into a short list of (offset, weight) pairs per row (taps of
// weight 0, e.g. on unscaled N/C axes, are dropped), and the last axis gathers
// through its own tap table.
#include <cmath>
#include <cstring>
#include <string>

#include "cpu/cpu_ops.h"
#include "cpu/resize_kernels.h"

namespace itkit::cpu {
namespace {

using Mode = ResizeParams::Mode;
using Coord = ResizeParams::Coord;

struct Combo {
  int64_t offset;
  float weight;
};

template <typename T>
void NearestRows(const ResizeParams& p, const std::vector<std::vector<AxisTaps>>& taps,
                 const std::vector<int64_t>& strides, const T* x, T* y, ThreadPool* pool) {
  const size_t rank = p.in.size(), last = rank - 1;
  const int64_t width = p.out[last];
  const int64_t rows = ElementCount(p.out) / std::max<int64_t>(1, width);
  T extrapolate{};
  if constexpr (sizeof(T) == sizeof(float)) std::memcpy(&extrapolate, &p.extrapolation_value, sizeof(T));
  ParallelFor(pool, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t rem = r, base = 0;
      bool outside = false;
      for (size_t a = last; a-- > 0;) {
        const AxisTaps& t = taps[a][static_cast<size_t>(rem % p.out[a])];
        rem /= p.out[a];
        base += t.index[0] * strides[a];
        outside = outside || t.outside;
      }
      T* yr = y + r * width;
      const std::vector<AxisTaps>& inner = taps[last];
      for (int64_t o = 0; o < width; ++o) {
        const AxisTaps& t = inner[static_cast<size_t>(o)];
        yr[o] = outside || t.outside ? extrapolate : x[base + t.index[0]];
      }
    }
  });
}

void InterpolateRows(const ResizeParams& p, const std::vector<std::vector<AxisTaps>>& taps,
                     const std::vector<int64_t>& strides, const float* x, float* y, ThreadPool* pool) {
  const size_t rank = p.in.size(), last = rank - 1;
  const int64_t width = p.out[last];
  const int64_t rows = ElementCount(p.out) / std::max<int64_t>(1, width);
  ParallelFor(pool, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, width)), [&](int64_t begin, int64_t end) {
    std::vector<Combo> combos, next;
    for (int64_t r = begin; r < end; ++r) {
      // Expand the outer axes' taps into (offset, weight) combinations.
      combos.assign(1, Combo{0, 1.0f});
      bool outside = false;
      int64_t rem = r;
      for (size_t a = last; a-- > 0;) {
        const AxisTaps& t = taps[a][static_cast<size_t>(rem % p.out[a])];
        rem /= p.out[a];
        outside = outside || t.outside;
        next.clear();
        for (const Combo& c : combos)
          for (int k = 0; k < t.count; ++k)
            if (t.weight[k] != 0)
              next.push_back({c.offset + t.index[k] * strides[a], c.weight * static_cast<float>(t.weight[k])});
        combos.swap(next);
      }
      float* yr = y + r * width;
      const std::vector<AxisTaps>& inner = taps[last];
      for (int64_t o = 0; o < width; ++o) {
        const AxisTaps& t = inner[static_cast<size_t>(o)];
        if (outside || t.outside) {
          yr[o] = p.extrapolation_value;
          continue;
        }
        float acc = 0.0f;
        for (const Combo& c : combos) {
          const float* xr = x + c.offset;
          float s = 0.0f;
          for (int k = 0; k < t.count; ++k) s += static_cast<float>(t.weight[k]) * xr[t.index[k]];
          acc += c.weight * s;
        }
        yr[o] = acc;
      }
    }
  });
}

}  // namespace

void ResizeFast(const ResizeParams& p, const void* x, void* y, ThreadPool* pool) {
  const size_t rank = p.in.size();
  if (rank == 0 || ElementCount(p.out) == 0) return;
  std::vector<std::vector<AxisTaps>> taps(rank);
  for (size_t a = 0; a < rank; ++a) {
    taps[a].resize(static_cast<size_t>(p.out[a]));
    for (int64_t o = 0; o < p.out[a]; ++o) taps[a][static_cast<size_t>(o)] = ComputeAxisTaps(p, a, o);
  }
  const std::vector<int64_t> strides = ContiguousStrides(p.in);
  if (p.mode == Mode::kNearest) {
    switch (p.element_size) {
      case 1: return NearestRows(p, taps, strides, static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), pool);
      case 2: return NearestRows(p, taps, strides, static_cast<const uint16_t*>(x), static_cast<uint16_t*>(y), pool);
      case 4: return NearestRows(p, taps, strides, static_cast<const uint32_t*>(x), static_cast<uint32_t*>(y), pool);
      default: return NearestRows(p, taps, strides, static_cast<const uint64_t*>(x), static_cast<uint64_t*>(y), pool);
    }
  }
  InterpolateRows(p, taps, strides, static_cast<const float*>(x), static_cast<float*>(y), pool);
}

void ReadRoi(const Tensor& roi, ResizeParams* p) {
  const size_t rank = p->in.size();
  p->roi_start.resize(rank);
  p->roi_end.resize(rank);
  for (size_t a = 0; a < rank; ++a) {
    p->roi_start[a] = roi.GetAsDouble(static_cast<int64_t>(a));
    p->roi_end[a] = roi.GetAsDouble(static_cast<int64_t>(a + rank));
  }
}

Result<ResizeParams> MakeResizeParams(const NodeSignature& sig) {
  const Node& node = *sig.node;
  const std::string who = node.Describe();
  const bool upsample = node.op_type == "Upsample";
  const bool legacy = upsample || sig.opset < 11;  // Upsample-7/9 and Resize-10
  ResizeParams p;
  p.in = sig.inputs[0].shape;
  p.out = sig.outputs[0].shape;
  const size_t rank = p.in.size();
  if (rank == 0 || p.out.size() != rank) return InvalidArgument(who, ": bad input/output ranks");
  const std::string mode = node.attrs.GetString("mode", "nearest");
  if (mode == "nearest") p.mode = Mode::kNearest;
  else if (mode == "linear" || mode == "bilinear" || mode == "trilinear") p.mode = Mode::kLinear;
  else if (mode == "cubic" && !legacy) p.mode = Mode::kCubic;
  else return Unsupported(who, ": mode '", mode, "'");
  if (legacy) {
    // These forms predate the attributes: x_original = x_resized / scale, and nearest
    // rounds down (up when shrinking, as ONNX Runtime's Resize-10 does).
    p.coord = Coord::kAsymmetric;
    p.nearest = ResizeParams::Nearest::kSimple;
  } else {
    const std::string ct = node.attrs.GetString("coordinate_transformation_mode", "half_pixel");
    if (ct == "half_pixel") p.coord = Coord::kHalfPixel;
    else if (ct == "pytorch_half_pixel") p.coord = Coord::kPytorchHalfPixel;
    else if (ct == "align_corners") p.coord = Coord::kAlignCorners;
    else if (ct == "asymmetric") p.coord = Coord::kAsymmetric;
    else if (ct == "tf_half_pixel_for_nn") p.coord = Coord::kTfHalfPixelForNn;
    else if (ct == "tf_crop_and_resize") p.coord = Coord::kTfCropAndResize;
    else return Unsupported(who, ": coordinate_transformation_mode '", ct, "'");
    const std::string nm = node.attrs.GetString("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor") p.nearest = ResizeParams::Nearest::kRoundPreferFloor;
    else if (nm == "round_prefer_ceil") p.nearest = ResizeParams::Nearest::kRoundPreferCeil;
    else if (nm == "floor") p.nearest = ResizeParams::Nearest::kFloor;
    else if (nm == "ceil") p.nearest = ResizeParams::Nearest::kCeil;
    else return Unsupported(who, ": nearest_mode '", nm, "'");
    p.cubic_a = node.attrs.GetFloat("cubic_coeff_a", -0.75f);
    p.exclude_outside = node.attrs.GetInt("exclude_outside", 0) != 0;
    p.extrapolation_value = node.attrs.GetFloat("extrapolation_value", 0.0f);
  }
  const DType dt = sig.inputs[0].dtype;
  if (p.mode != Mode::kNearest && dt != DType::kF32)
    return Unsupported(who, ": ", DTypeName(dt), " interpolation is not supported on the CPU (f32 only)");
  p.element_size = DTypeSize(dt);
  if (p.element_size != 1 && p.element_size != 2 && p.element_size != 4 && p.element_size != 8)
    return Unsupported(who, ": dtype ", DTypeName(dt));

  auto present = [&](size_t i) {
    return i < sig.inputs.size() && sig.inputs[i].dtype != DType::kUndefined && ElementCount(sig.inputs[i].shape) > 0;
  };
  p.scales.assign(rank, 1.0);
  const size_t scales_input = legacy ? 1 : 2;
  if (upsample && node.attrs.Has("scales")) {
    const std::vector<float> s = node.attrs.GetFloats("scales");
    if (s.size() != rank) return InvalidArgument(who, ": scales has ", s.size(), " values");
    for (size_t a = 0; a < rank; ++a) p.scales[a] = s[a];
  } else if (!legacy && present(3)) {
    // Sizes given: the scale is the exact ratio of the planned extents.
    for (size_t a = 0; a < rank; ++a) {
      if (p.in[a] == 0) return InvalidArgument(who, ": cannot resize an empty axis");
      p.scales[a] = static_cast<double>(p.out[a]) / static_cast<double>(p.in[a]);
    }
  } else if (present(scales_input)) {
    const Tensor* s = sig.inputs[scales_input].constant;
    if (!s) return Unsupported(who, ": scales must be constant");
    if (s->size() != static_cast<int64_t>(rank)) return InvalidArgument(who, ": scales has ", s->size(), " values");
    for (size_t a = 0; a < rank; ++a) p.scales[a] = s->GetAsDouble(static_cast<int64_t>(a));
  } else {
    return InvalidArgument(who, ": neither scales nor sizes given");
  }
  for (double s : p.scales)
    if (!(s > 0)) return InvalidArgument(who, ": scales must be positive");
  if (p.coord == Coord::kTfCropAndResize) {
    // The extrapolation value is a float: keep the mode to float data.
    if (dt != DType::kF32) return Unsupported(who, ": tf_crop_and_resize on ", DTypeName(dt));
    if (!present(1)) return InvalidArgument(who, ": tf_crop_and_resize needs roi");
    if (ElementCount(sig.inputs[1].shape) != static_cast<int64_t>(2 * rank))
      return InvalidArgument(who, ": roi needs ", 2 * rank, " values");
    if (!IsFloat(sig.inputs[1].dtype)) return InvalidArgument(who, ": roi must be float");
    // A constant roi is read now; otherwise the kernel reads it per run.
    if (const Tensor* roi = sig.inputs[1].constant) ReadRoi(*roi, &p);
  }
  for (size_t a = 0; a < rank; ++a)
    if (p.in[a] == 0 && p.out[a] > 0) return InvalidArgument(who, ": cannot resize an empty axis");
  return p;
}

Result<std::unique_ptr<OpKernel>> CreateResizeKernel(const NodeSignature& sig, ResizeImpl impl) {
  ITKIT_ASSIGN_OR_RETURN(ResizeParams p, MakeResizeParams(sig));
  const bool runtime_roi = p.coord == ResizeParams::Coord::kTfCropAndResize && p.roi_start.empty();
  return std::unique_ptr<OpKernel>(MakeKernel([p, impl, runtime_roi](KernelContext& ctx) mutable {
    if (runtime_roi) ReadRoi(*ctx.inputs[1], &p);
    if (impl == ResizeImpl::kReference) {
      ResizeReference(p, ctx.inputs[0]->raw(), ctx.outputs[0]->raw());
    } else {
      ResizeFast(p, ctx.inputs[0]->raw(), ctx.outputs[0]->raw(), ctx.pool);
    }
    return Status::Ok();
  }));
}

namespace {
Result<std::unique_ptr<OpKernel>> CreateAuto(const NodeSignature& sig) {
  return CreateResizeKernel(sig, ResizeImpl::kAuto);
}
}  // namespace

void AppendResizeKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Resize", CreateAuto});
  table.push_back({"", "Upsample", CreateAuto});
}

}  // namespace itkit::cpu
