// Shape rules of the reduction family: Reduce* (axes as attribute, or as input for
// ReduceSum from opset 13 and all of them from 18), ArgMax/ArgMin, and the
// normalisations along an axis (Softmax, LogSoftmax, Hardmax; before opset 13 these
// flatten the input to 2-D at `axis`, which does not change the output shape).
#include <algorithm>

#include "shape_infer/reduce_axes.h"
#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

bool IsReducible(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kI64 || t == DType::kI32 || t == DType::kU8;
}

Status ReduceRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 2));
  if (!IsReducible(ctx.input_dtype(0)))
    return ctx.Error("dtype ", DTypeName(ctx.input_dtype(0)), " cannot be reduced");
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> axes, ctx.IntsFromAttrOrInput("axes", 1, {}));
  const bool keepdims = ctx.attrs().GetInt("keepdims", 1) != 0;
  const bool noop = ctx.attrs().GetInt("noop_with_empty_axes", 0) != 0;
  const Shape& in = ctx.input_shape(0);
  ITKIT_ASSIGN_OR_RETURN(std::vector<bool> reduced,
                         ReducedAxesMask(static_cast<int>(in.size()), axes, noop, ctx.node()));
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!reduced[i]) out.push_back(in[i]);
    else if (keepdims) out.push_back(1);
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status ArgRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  if (!IsReducible(ctx.input_dtype(0)))
    return ctx.Error("dtype ", DTypeName(ctx.input_dtype(0)), " is not supported");
  const Shape& in = ctx.input_shape(0);
  if (in.empty()) return ctx.Error("needs an input of rank 1 or more");
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int>(in.size()), ctx.node()));
  if (in[static_cast<size_t>(axis)] == 0) return ctx.Error("axis ", axis, " is empty");
  Shape out = in;
  if (ctx.attrs().GetInt("keepdims", 1) != 0) out[static_cast<size_t>(axis)] = 1;
  else out.erase(out.begin() + axis);
  ctx.SetOutput(0, DType::kI64, std::move(out));
  return Status::Ok();
}

Status SoftmaxRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const DType dt = ctx.input_dtype(0);
  if (dt != DType::kF32 && dt != DType::kF16) return ctx.Error("dtype ", DTypeName(dt), " is not supported");
  const int rank = ctx.input_rank(0);
  const int64_t axis = ctx.attrs().GetInt("axis", ctx.opset() >= 13 ? -1 : 1);
  if (rank == 0) return ctx.Error("needs an input of rank 1 or more");
  ITKIT_RETURN_IF_ERROR(NormalizeAxis(axis, rank, ctx.node()).status());
  ctx.SetOutput(0, dt, ctx.input_shape(0));
  return Status::Ok();
}

}  // namespace

void AppendReduce(std::vector<OpSchema>& table) {
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"})
    table.push_back({"", op, &ReduceRule});
  table.push_back({"", "ArgMax", &ArgRule});
  table.push_back({"", "ArgMin", &ArgRule});
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) table.push_back({"", op, &SoftmaxRule});
}

}  // namespace itkit::shape_rules
