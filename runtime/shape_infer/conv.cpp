// Shape rules of the conv family: Conv, ConvTranspose and itkit.FusedConv.
//
// itkit.FusedConv (created by runtime/passes/fuse_conv_activation.cpp and
// split_conv_over_concat.cpp) has Conv's inputs (X, W, optional B) and attributes, an
// optional fourth input Z of exactly Y's shape and dtype, plus
//   activation: string in {"", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu"}
//   alpha:      float, LeakyRelu's slope (default 0.01)
// and computes Y = activation(Conv(X, W) + B + Z).
#include <string>

#include "shape_infer/shape_rules.h"
#include "shape_infer/window_geometry.h"

namespace itkit::shape_rules {
namespace {

bool IsFloatType(DType t) { return t == DType::kF32 || t == DType::kF16; }

Status CheckFusedActivation(const ShapeContext& ctx) {
  const std::string act = ctx.attrs().GetString("activation", "");
  if (act.empty() || act == "Relu" || act == "LeakyRelu" || act == "Sigmoid" || act == "Tanh" || act == "Gelu")
    return Status::Ok();
  return ctx.Error("unknown fused activation '", act, "'");
}

// Shared by Conv/FusedConv (transpose = false) and ConvTranspose.
Status InferConvLike(ShapeContext& ctx, bool transpose, int max_inputs = 3) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, max_inputs));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("X must be a float tensor, got ", DTypeName(dt));
  if (ctx.input_dtype(1) != dt) return ctx.Error("W dtype ", DTypeName(ctx.input_dtype(1)), " differs from X's");
  const Shape& x = ctx.input_shape(0);
  const Shape& w = ctx.input_shape(1);
  if (x.size() < 3) return ctx.Error("X must have rank >= 3, got ", ShapeToString(x));
  if (w.size() != x.size()) return ctx.Error("W ", ShapeToString(w), " must have X's rank ", x.size());
  const int64_t group = ctx.attrs().GetInt("group", 1);
  if (group <= 0) return ctx.Error("group must be positive");
  int64_t out_channels = 0;
  if (transpose) {
    // W is [C_in, C_out / group, k...].
    if (w[0] != x[1]) return ctx.Error("W has ", w[0], " input channels, X has ", x[1]);
    if (x[1] % group != 0) return ctx.Error("input channels ", x[1], " not divisible by group ", group);
    out_channels = w[1] * group;
  } else {
    // W is [C_out, C_in / group, k...].
    if (w[1] * group != x[1])
      return ctx.Error("W expects ", w[1], "x", group, " input channels, X has ", x[1]);
    if (w[0] % group != 0) return ctx.Error("output channels ", w[0], " not divisible by group ", group);
    out_channels = w[0];
  }
  if (ctx.has_input(2)) {
    if (ctx.input_dtype(2) != dt) return ctx.Error("B dtype differs from X's");
    const Shape& b = ctx.input_shape(2);
    if (b.size() != 1 || b[0] != out_channels)
      return ctx.Error("B must have shape [", out_channels, "], got ", ShapeToString(b));
  }
  const std::vector<int64_t> kernel(w.begin() + 2, w.end());
  ITKIT_ASSIGN_OR_RETURN(WindowGeometry g,
                         ComputeWindowGeometry(ctx.node(), transpose ? WindowOp::kConvTranspose : WindowOp::kConv,
                                               x, kernel));
  Shape y = {x[0], out_channels};
  y.insert(y.end(), g.out.begin(), g.out.end());
  if (ctx.has_input(3)) {  // FusedConv's Z: added as it is, no broadcasting
    if (ctx.input_dtype(3) != dt) return ctx.Error("Z dtype differs from X's");
    if (ctx.input_shape(3) != y)
      return ctx.Error("Z must have Y's shape ", ShapeToString(y), ", got ", ShapeToString(ctx.input_shape(3)));
  }
  ctx.SetOutput(0, dt, std::move(y));
  return Status::Ok();
}

Status InferConv(ShapeContext& ctx) { return InferConvLike(ctx, false); }
Status InferConvTranspose(ShapeContext& ctx) { return InferConvLike(ctx, true); }
Status InferFusedConv(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(CheckFusedActivation(ctx));
  return InferConvLike(ctx, false, 4);
}

}  // namespace

void AppendConv(std::vector<OpSchema>& table) {
  table.push_back({"", "Conv", InferConv});
  table.push_back({"", "ConvTranspose", InferConvTranspose});
  table.push_back({kItkitDomain, "FusedConv", InferFusedConv});
}

}  // namespace itkit::shape_rules
