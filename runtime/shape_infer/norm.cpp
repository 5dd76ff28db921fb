// Shape rules of the norm family: BatchNormalization, InstanceNormalization,
// LayerNormalization, and the fused itkit.GroupNorm / itkit.LayerNormAct.
//
// itkit.GroupNorm: inputs X [N, C, ...], scale [C], bias [C], optional residual R of
// exactly X's shape and dtype (no broadcasting); attributes num_groups
// (C % num_groups == 0), epsilon (default 1e-5), activation/alpha as for FusedConv.
// Y = act((X - mean_g) / sqrt(var_g + eps) * scale[c] + bias[c] + R) with mean_g/var_g
// (biased) over each group's C/num_groups channels and all spatial positions.
// itkit.LayerNormAct: LayerNormalization's inputs/attributes/outputs plus activation/alpha.
#include <string>

#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

bool IsFloatType(DType t) { return t == DType::kF32 || t == DType::kF16; }

Status CheckActivation(const ShapeContext& ctx) {
  const std::string act = ctx.attrs().GetString("activation", "");
  if (act.empty() || act == "Relu" || act == "LeakyRelu" || act == "Sigmoid" || act == "Tanh" || act == "Gelu")
    return Status::Ok();
  return ctx.Error("unknown fused activation '", act, "'");
}

Status CheckChannelVector(const ShapeContext& ctx, size_t i, int64_t channels, const char* what) {
  if (!IsFloatType(ctx.input_dtype(i))) return ctx.Error(what, " must be float");
  const Shape& s = ctx.input_shape(i);
  if (s.size() != 1 || s[0] != channels)
    return ctx.Error(what, " must have shape [", channels, "], got ", ShapeToString(s));
  return Status::Ok();
}

Status InferBatchNorm(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(5, 5));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("X must be float, got ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  if (x.size() < 2) return ctx.Error("X must have rank >= 2, got ", ShapeToString(x));
  static const char* kNames[] = {"", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) ITKIT_RETURN_IF_ERROR(CheckChannelVector(ctx, i, x[1], kNames[i]));
  const bool training = ctx.attrs().GetInt("training_mode", 0) != 0;
  if (ctx.num_outputs() > 1 && !training) {
    // Before opset 14 extra outputs meant training; since then they need training_mode.
    if (ctx.opset() >= 14) return ctx.Error("running_mean/running_var outputs need training_mode=1");
    if (ctx.num_outputs() > 3) return Unsupported(ctx.node().Describe(), ": saved_mean/saved_var outputs");
  }
  ctx.SetOutput(0, dt, x);
  ctx.SetOutput(1, ctx.input_dtype(3), {x[1]});
  ctx.SetOutput(2, ctx.input_dtype(4), {x[1]});
  return Status::Ok();
}

Status InferInstanceNorm(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 3));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("X must be float, got ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  if (x.size() < 3) return ctx.Error("X must have rank >= 3, got ", ShapeToString(x));
  ITKIT_RETURN_IF_ERROR(CheckChannelVector(ctx, 1, x[1], "scale"));
  ITKIT_RETURN_IF_ERROR(CheckChannelVector(ctx, 2, x[1], "B"));
  ctx.SetOutput(0, dt, x);
  return Status::Ok();
}

Status InferGroupNorm(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(CheckActivation(ctx));
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 4));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("X must be float, got ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  if (x.size() < 2) return ctx.Error("X must have rank >= 2, got ", ShapeToString(x));
  ITKIT_RETURN_IF_ERROR(CheckChannelVector(ctx, 1, x[1], "scale"));
  ITKIT_RETURN_IF_ERROR(CheckChannelVector(ctx, 2, x[1], "bias"));
  if (ctx.has_input(3)) {  // the residual: the fusion pass proved its shape equal to X's
    if (ctx.input_dtype(3) != dt)
      return ctx.Error("residual dtype ", DTypeName(ctx.input_dtype(3)), " differs from X's ", DTypeName(dt));
    if (ctx.input_shape(3) != x)
      return ctx.Error("residual shape ", ShapeToString(ctx.input_shape(3)), " must equal X's ", ShapeToString(x));
  }
  ITKIT_ASSIGN_OR_RETURN(int64_t groups, ctx.attrs().RequireInt("num_groups"));
  if (groups <= 0 || x[1] % groups != 0)
    return ctx.Error("num_groups ", groups, " must be positive and divide the ", x[1], " channels");
  ctx.SetOutput(0, dt, x);
  return Status::Ok();
}

Status InferLayerNorm(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(CheckActivation(ctx));
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 3));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("X must be float, got ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  const int rank = static_cast<int>(x.size());
  if (rank < 1) return ctx.Error("X must have rank >= 1");
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(ctx.attrs().GetInt("axis", -1), rank, ctx.node()));
  const Shape normalized(x.begin() + axis, x.end());
  // Scale and B broadcast (unidirectionally) to X.shape[axis:].
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    if (ctx.input_dtype(i) != dt) return ctx.Error("input ", i, " dtype differs from X's");
    auto b = BroadcastShapes(normalized, ctx.input_shape(i));
    if (!b.ok() || *b != normalized)
      return ctx.Error("input ", i, " shape ", ShapeToString(ctx.input_shape(i)),
                       " does not broadcast to the normalized shape ", ShapeToString(normalized));
  }
  Shape stat(x.begin(), x.begin() + axis);
  stat.resize(x.size(), 1);
  ctx.SetOutput(0, dt, x);
  ctx.SetOutput(1, DType::kF32, stat);  // stash_type float
  ctx.SetOutput(2, DType::kF32, stat);
  return Status::Ok();
}

}  // namespace

void AppendNorm(std::vector<OpSchema>& table) {
  table.push_back({"", "BatchNormalization", InferBatchNorm});
  table.push_back({"", "InstanceNormalization", InferInstanceNorm});
  table.push_back({"", "LayerNormalization", InferLayerNorm});
  table.push_back({kItkitDomain, "GroupNorm", InferGroupNorm});
  table.push_back({kItkitDomain, "LayerNormAct", InferLayerNorm});
}

}  // namespace itkit::shape_rules
