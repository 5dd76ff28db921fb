// Shape rules of the resize family: Resize (opsets 10-17) and Upsample (7-9).
// Scales/sizes must be known at planning time (they are constants in exported
// models, or computed from shapes by constant propagation).
#include <cmath>
#include <string>

#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

// Float values of constant input i (scales), or an error naming it.
Result<std::vector<double>> ConstantFloats(const ShapeContext& ctx, size_t i, const char* what) {
  const Tensor* t = ctx.input_constant(i);
  if (!t)
    return Unsupported(ctx.node().Describe(), ": input ", i, " (", what,
                       ") must be a constant or computable at planning time");
  if (!IsFloat(t->dtype())) return ctx.Error("input ", i, " (", what, ") must be float");
  std::vector<double> v(static_cast<size_t>(t->size()));
  for (int64_t k = 0; k < t->size(); ++k) v[static_cast<size_t>(k)] = t->GetAsDouble(k);
  return v;
}

Status CheckModes(const ShapeContext& ctx) {
  const std::string mode = ctx.attrs().GetString("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "cubic" && mode != "bilinear" && mode != "trilinear")
    return ctx.Error("unknown mode '", mode, "'");
  const std::string ct = ctx.attrs().GetString("coordinate_transformation_mode", "half_pixel");
  if (ct != "half_pixel" && ct != "pytorch_half_pixel" && ct != "align_corners" && ct != "asymmetric" &&
      ct != "tf_half_pixel_for_nn" && ct != "tf_crop_and_resize")
    return ctx.Error("unknown coordinate_transformation_mode '", ct, "'");
  const std::string nm = ctx.attrs().GetString("nearest_mode", "round_prefer_floor");
  if (nm != "round_prefer_floor" && nm != "round_prefer_ceil" && nm != "floor" && nm != "ceil")
    return ctx.Error("unknown nearest_mode '", nm, "'");
  if (ctx.attrs().Has("axes")) return Unsupported(ctx.node().Describe(), ": the opset-18 'axes' attribute");
  return Status::Ok();
}

Status OutputFromScales(ShapeContext& ctx, const std::vector<double>& scales) {
  const Shape& x = ctx.input_shape(0);
  if (scales.size() != x.size())
    return ctx.Error("scales has ", scales.size(), " values for a rank-", x.size(), " input");
  Shape y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (!(scales[i] > 0) || !std::isfinite(scales[i])) return ctx.Error("scales must be positive and finite");
    const double extent = std::floor(static_cast<double>(x[i]) * scales[i]);
    if (extent > static_cast<double>(int64_t{1} << 40)) return ctx.Error("output extent too large");
    y[i] = static_cast<int64_t>(extent);
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(y));
  return Status::Ok();
}

bool PresentAndNonEmpty(const ShapeContext& ctx, size_t i) {
  return ctx.has_input(i) && ElementCount(ctx.input_shape(i)) > 0;
}

Status InferResize(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(CheckModes(ctx));
  if (ctx.opset() < 11) {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
    ITKIT_ASSIGN_OR_RETURN(std::vector<double> scales, ConstantFloats(ctx, 1, "scales"));
    return OutputFromScales(ctx, scales);
  }
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 4));
  const Shape& x = ctx.input_shape(0);
  if (PresentAndNonEmpty(ctx, 3)) {
    if (PresentAndNonEmpty(ctx, 2)) return ctx.Error("only one of scales and sizes may be given");
    ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, ctx.ConstantInts(3, "sizes"));
    if (sizes.size() != x.size())
      return ctx.Error("sizes has ", sizes.size(), " values for a rank-", x.size(), " input");
    for (int64_t s : sizes)
      if (s < 0) return ctx.Error("sizes must be >= 0");
    ctx.SetOutput(0, ctx.input_dtype(0), Shape(sizes.begin(), sizes.end()));
    return Status::Ok();
  }
  if (!PresentAndNonEmpty(ctx, 2)) return ctx.Error("one of scales and sizes must be given");
  ITKIT_ASSIGN_OR_RETURN(std::vector<double> scales, ConstantFloats(ctx, 2, "scales"));
  return OutputFromScales(ctx, scales);
}

Status InferUpsample(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(CheckModes(ctx));
  if (ctx.attrs().Has("scales")) {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
    const std::vector<float> f = ctx.attrs().GetFloats("scales");
    return OutputFromScales(ctx, std::vector<double>(f.begin(), f.end()));
  }
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_ASSIGN_OR_RETURN(std::vector<double> scales, ConstantFloats(ctx, 1, "scales"));
  return OutputFromScales(ctx, scales);
}

}  // namespace

void AppendResize(std::vector<OpSchema>& table) {
  table.push_back({"", "Resize", InferResize});
  table.push_back({"", "Upsample", InferUpsample});
}

}  // namespace itkit::shape_rules
