// Shape rules of the matmul family: MatMul (numpy semantics: 1-D operands are
// promoted and the added axis dropped again; batch axes broadcast) and Gemm.
#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

bool IsFloatType(DType t) { return t == DType::kF32 || t == DType::kF16; }

Status InferMatMul(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("A must be float, got ", DTypeName(dt));
  if (ctx.input_dtype(1) != dt) return ctx.Error("B dtype differs from A's");
  Shape a = ctx.input_shape(0), b = ctx.input_shape(1);
  if (a.empty() || b.empty()) return ctx.Error("MatMul operands must have rank >= 1");
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), 1);
  if (b_vec) b.push_back(1);
  const int64_t k = a.back();
  if (b[b.size() - 2] != k)
    return ctx.Error("inner dimensions differ: ", ShapeToString(ctx.input_shape(0)), " x ",
                     ShapeToString(ctx.input_shape(1)));
  const Shape a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  auto batch = BroadcastShapes(a_batch, b_batch);
  if (!batch.ok()) return ctx.Error("batch axes: ", batch.status().message());
  Shape y = *batch;
  if (!a_vec) y.push_back(a[a.size() - 2]);
  if (!b_vec) y.push_back(b.back());
  ctx.SetOutput(0, dt, std::move(y));
  return Status::Ok();
}

Status InferGemm(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 3));
  const DType dt = ctx.input_dtype(0);
  if (!IsFloatType(dt)) return ctx.Error("A must be float, got ", DTypeName(dt));
  if (ctx.input_dtype(1) != dt) return ctx.Error("B dtype differs from A's");
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  if (a.size() != 2 || b.size() != 2)
    return ctx.Error("A and B must be matrices, got ", ShapeToString(a), " and ", ShapeToString(b));
  const bool ta = ctx.attrs().GetInt("transA", 0) != 0, tb = ctx.attrs().GetInt("transB", 0) != 0;
  const int64_t m = ta ? a[1] : a[0], ka = ta ? a[0] : a[1];
  const int64_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
  if (ka != kb) return ctx.Error("inner dimensions differ: ", ka, " vs ", kb);
  if (ctx.has_input(2)) {
    if (ctx.input_dtype(2) != dt) return ctx.Error("C dtype differs from A's");
    auto c = BroadcastShapes({m, n}, ctx.input_shape(2));
    if (!c.ok() || *c != Shape{m, n})
      return ctx.Error("C ", ShapeToString(ctx.input_shape(2)), " does not broadcast to [", m, ",", n, "]");
  }
  ctx.SetOutput(0, dt, {m, n});
  return Status::Ok();
}

}  // namespace

void AppendMatMul(std::vector<OpSchema>& table) {
  table.push_back({"", "MatMul", InferMatMul});
  table.push_back({"", "Gemm", InferGemm});
}

}  // namespace itkit::shape_rules
