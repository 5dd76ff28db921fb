// Resize (opset 11+) on [N, C, spatial...] f32/f16: nearest and (bi/tri)linear over
// 1-3 spatial axes, every coordinate_transformation_mode but tf_crop_and_resize and
// half_pixel_symmetric. The coordinate math is kernel_math.h's, shared with the host
// tests. Scales/sizes must be known at planning time (constants, or folded shape
// arithmetic as torch exports it).
#include "cuda/common.cuh"

namespace itkit::cuda {
namespace {

constexpr int kMaxSpatial = 3;

struct ResizeParams {
  int spatial = 0;                 // 1-3
  int64_t rows = 0;                // N * C
  int64_t in[kMaxSpatial] = {}, out[kMaxSpatial] = {};
  double scale[kMaxSpatial] = {};
  double out_len[kMaxSpatial] = {};  // scale * in, unrounded (align_corners)
  CoordMode coord = CoordMode::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  bool linear = false;
};

template <typename T>
__global__ void ResizeKernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, ResizeParams p) {
  int64_t out_plane = 1, in_plane = 1;
  for (int a = 0; a < p.spatial; ++a) {
    out_plane *= p.out[a];
    in_plane *= p.in[a];
  }
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / out_plane;
    int64_t rem = i % out_plane;
    int64_t o[kMaxSpatial] = {0, 0, 0};
    for (int a = p.spatial - 1; a >= 0; --a) {
      o[a] = rem % p.out[a];
      rem /= p.out[a];
    }
    const T* src = x + row * in_plane;
    float v = 0.0f;
    if (!p.linear) {
      int64_t off = 0;
      for (int a = 0; a < p.spatial; ++a) {
        const double c = ResizeSourceCoord(o[a], p.coord, p.scale[a], p.in[a], p.out_len[a]);
        off = off * p.in[a] + NearestIndex(c, p.nearest, p.in[a]);
      }
      v = ToF(src[off]);
    } else {
      LinearTaps t[kMaxSpatial];
      for (int a = 0; a < p.spatial; ++a)
        t[a] = LinearTapsFor(ResizeSourceCoord(o[a], p.coord, p.scale[a], p.in[a], p.out_len[a]), p.in[a]);
      // Sum over the 2^spatial corners.
      for (int corner = 0; corner < (1 << p.spatial); ++corner) {
        float w = 1.0f;
        int64_t off = 0;
        for (int a = 0; a < p.spatial; ++a) {
          const bool hi = (corner >> (p.spatial - 1 - a)) & 1;
          w *= hi ? t[a].w1 : 1.0f - t[a].w1;
          off = off * p.in[a] + (hi ? t[a].i1 : t[a].i0);
        }
        if (w != 0.0f) v += w * ToF(src[off]);
      }
    }
    y[i] = FromF<T>(v);
  }
}

Result<ResizeParams> GetParams(const NodeSignature& sig) {
  const Node& node = *sig.node;
  if (sig.opset < 11) return Unsupported("Resize before opset 11");
  const Shape& x = sig.inputs[0].shape;
  const Shape& y = sig.outputs[0].shape;
  const int spatial = static_cast<int>(x.size()) - 2;
  if (spatial < 1 || spatial > kMaxSpatial || y.size() != x.size())
    return Unsupported("Resize of rank ", x.size(), " (CUDA: [N, C] + 1-3 spatial axes)");
  if (y[0] != x[0] || y[1] != x[1]) return Unsupported("Resize of the batch or channel axis");
  if (node.attrs.Has("axes")) return Unsupported("Resize axes attribute");
  if (node.attrs.GetInt("antialias", 0) != 0) return Unsupported("antialias");
  if (node.attrs.GetInt("exclude_outside", 0) != 0) return Unsupported("exclude_outside");
  if (node.attrs.GetString("keep_aspect_ratio_policy", "stretch") != "stretch")
    return Unsupported("keep_aspect_ratio_policy");
  ResizeParams p;
  p.spatial = spatial;
  p.rows = x[0] * x[1];
  const std::string mode = node.attrs.GetString("mode", "nearest");
  if (mode == "linear") {
    p.linear = true;
  } else if (mode != "nearest") {
    return Unsupported("Resize mode ", mode);
  }
  const std::string ct = node.attrs.GetString("coordinate_transformation_mode", "half_pixel");
  if (ct == "half_pixel") p.coord = CoordMode::kHalfPixel;
  else if (ct == "pytorch_half_pixel") p.coord = CoordMode::kPytorchHalfPixel;
  else if (ct == "align_corners") p.coord = CoordMode::kAlignCorners;
  else if (ct == "asymmetric") p.coord = CoordMode::kAsymmetric;
  else if (ct == "tf_half_pixel_for_nn") p.coord = CoordMode::kTfHalfPixelForNn;
  else return Unsupported("coordinate_transformation_mode ", ct);
  const std::string nm = node.attrs.GetString("nearest_mode", "round_prefer_floor");
  if (nm == "round_prefer_floor") p.nearest = NearestMode::kRoundPreferFloor;
  else if (nm == "round_prefer_ceil") p.nearest = NearestMode::kRoundPreferCeil;
  else if (nm == "floor") p.nearest = NearestMode::kFloor;
  else if (nm == "ceil") p.nearest = NearestMode::kCeil;
  else return Unsupported("nearest_mode ", nm);
  // Inputs: X, roi, scales, sizes. The scale of an axis is the given one, or out/in
  // when sizes were given (ONNX).
  const Tensor* scales = sig.inputs.size() > 2 ? sig.inputs[2].constant : nullptr;
  const bool has_scales = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined &&
                          ElementCount(sig.inputs[2].shape) > 0;
  if (has_scales && !scales) return Unsupported("Resize scales are not constant");
  if (has_scales && scales->size() != static_cast<int64_t>(x.size()))
    return InvalidArgument("Resize has ", scales->size(), " scales for rank ", x.size());
  for (int a = 0; a < spatial; ++a) {
    p.in[a] = x[2 + a];
    p.out[a] = y[2 + a];
    // As the CPU reference: the scale input's float value, or out/in in double.
    p.scale[a] = has_scales ? static_cast<double>(static_cast<float>(scales->GetAsDouble(2 + a)))
                            : static_cast<double>(y[2 + a]) / static_cast<double>(x[2 + a]);
    if (!(p.scale[a] > 0.0)) return InvalidArgument("Resize scale must be positive");
    p.out_len[a] = p.scale[a] * static_cast<double>(x[2 + a]);
    if (p.in[a] == 0 && p.out[a] > 0) return InvalidArgument("Resize of an empty axis");
  }
  return p;
}

bool ResizeSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  auto p = GetParams(sig);
  if (!p.ok()) return Reject(reason, p.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateResize(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(ResizeParams p, GetParams(sig));
  const int64_t n = ElementCount(sig.outputs[0].shape);
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      ResizeKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(kc.inputs[0]->data<T>(), kc.outputs[0]->data<T>(),
                                                                  n, p);
      ITKIT_CUDA_CHECK_LAUNCH("ResizeKernel");
      return Status::Ok();
    });
  });
}

}  // namespace

void AppendResizeOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "Resize", ResizeSupports, CreateResize});
}

}  // namespace itkit::cuda
