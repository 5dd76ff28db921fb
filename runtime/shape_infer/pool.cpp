// Shape rules of the pool family: MaxPool (optional Indices output), AveragePool,
// GlobalAveragePool, GlobalMaxPool over 1-3 (or more) spatial axes.
#include "shape_infer/shape_rules.h"
#include "shape_infer/window_geometry.h"

namespace itkit::shape_rules {
namespace {

Status InferWindowPool(ShapeContext& ctx, bool allow_u8) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const DType dt = ctx.input_dtype(0);
  if (!(dt == DType::kF32 || dt == DType::kF16 || (allow_u8 && dt == DType::kU8)))
    return ctx.Error("unsupported input dtype ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  ITKIT_ASSIGN_OR_RETURN(WindowGeometry g, ComputeWindowGeometry(ctx.node(), WindowOp::kPool, x, {}));
  Shape y = {x[0], x[1]};
  y.insert(y.end(), g.out.begin(), g.out.end());
  ctx.SetOutput(0, dt, y);
  ctx.SetOutput(1, DType::kI64, y);  // MaxPool's Indices (ignored when absent)
  return Status::Ok();
}

Status InferMaxPool(ShapeContext& ctx) {
  const int64_t order = ctx.attrs().GetInt("storage_order", 0);
  if (order != 0 && order != 1) return ctx.Error("storage_order must be 0 or 1");
  return InferWindowPool(ctx, true);
}
Status InferAveragePool(ShapeContext& ctx) { return InferWindowPool(ctx, false); }

Status InferGlobalPool(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const DType dt = ctx.input_dtype(0);
  if (dt != DType::kF32 && dt != DType::kF16) return ctx.Error("unsupported input dtype ", DTypeName(dt));
  const Shape& x = ctx.input_shape(0);
  if (x.size() < 3) return ctx.Error("input must have rank >= 3, got ", ShapeToString(x));
  Shape y(x.size(), 1);
  y[0] = x[0];
  y[1] = x[1];
  ctx.SetOutput(0, dt, std::move(y));
  return Status::Ok();
}

}  // namespace

void AppendPool(std::vector<OpSchema>& table) {
  table.push_back({"", "MaxPool", InferMaxPool});
  table.push_back({"", "AveragePool", InferAveragePool});
  table.push_back({"", "GlobalAveragePool", InferGlobalPool});
  table.push_back({"", "GlobalMaxPool", InferGlobalPool});
}

}  // namespace itkit::shape_rules
