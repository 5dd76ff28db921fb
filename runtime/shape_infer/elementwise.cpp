// Shape rules of the elementwise family: unary maps, numpy-broadcast binary and
// variadic ops, Where, Clip, Cast/CastLike, Dropout, and the fused
// itkit.FusedElementwise (itkit/fused_elementwise.h). Rules check the ONNX type
// constraints (f16 included: another backend may run it); a backend that cannot run
// a dtype says so when it creates the kernel.

#include "itkit/fused_elementwise.h"
#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

enum class Types { kFloat, kSigned, kNumeric, kBool, kAny };

bool Allowed(DType t, Types set) {
  switch (set) {
    case Types::kFloat: return t == DType::kF32 || t == DType::kF16;
    case Types::kSigned: return t == DType::kF32 || t == DType::kF16 || t == DType::kI64 || t == DType::kI32;
    case Types::kNumeric:
      return t == DType::kF32 || t == DType::kF16 || t == DType::kI64 || t == DType::kI32 || t == DType::kU8;
    case Types::kBool: return t == DType::kBool;
    case Types::kAny: return t != DType::kUndefined;
  }
  return false;
}

Status CheckType(const ShapeContext& ctx, size_t i, Types set) {
  if (!Allowed(ctx.input_dtype(i), set))
    return ctx.Error("input ", i, " has dtype ", DTypeName(ctx.input_dtype(i)),
                     ", which this operator does not accept");
  return Status::Ok();
}

Status CheckSameType(const ShapeContext& ctx, size_t a, size_t b) {
  if (ctx.input_dtype(a) != ctx.input_dtype(b))
    return ctx.Error("inputs ", a, " and ", b, " must have the same dtype, got ",
                     DTypeName(ctx.input_dtype(a)), " and ", DTypeName(ctx.input_dtype(b)));
  return Status::Ok();
}

Result<Shape> Broadcast(const ShapeContext& ctx, const Shape& a, const Shape& b) {
  auto s = BroadcastShapes(a, b);
  if (!s.ok()) return ctx.Error(s.status().message());
  return s;
}

// ---- unary ----------------------------------------------------------------

template <Types kIn>
Status SameTypeUnary(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, kIn));
  ctx.SetOutput(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status::Ok();
}

// IsNaN / IsInf: float in, bool out.
Status FloatPredicate(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kFloat));
  ctx.SetOutput(0, DType::kBool, ctx.input_shape(0));
  return Status::Ok();
}

// Clip: min/max are attributes up to opset 10, optional scalar inputs from 11.
Status ClipRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 3));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, ctx.opset() < 12 ? Types::kFloat : Types::kNumeric));
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 0, i));
    if (ElementCount(ctx.input_shape(i)) != 1)
      return ctx.Error(i == 1 ? "min" : "max", " must be a scalar, got shape ",
                       ShapeToString(ctx.input_shape(i)));
  }
  ctx.SetOutput(0, ctx.input_dtype(0), ctx.input_shape(0));
  return Status::Ok();
}

// Dropout at inference is the identity; the optional mask is all true.
Status DropoutRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 3));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kFloat));
  if (ctx.has_input(1) && ElementCount(ctx.input_shape(1)) != 1)
    return ctx.Error("ratio must be a scalar");
  if (ctx.has_input(2) && (ctx.input_dtype(2) != DType::kBool || ElementCount(ctx.input_shape(2)) != 1))
    return ctx.Error("training_mode must be a bool scalar");
  if (ctx.num_outputs() > 2) return ctx.Error("has at most 2 outputs");
  ctx.SetOutput(0, ctx.input_dtype(0), ctx.input_shape(0));
  // Opsets before 10 typed the mask like the data.
  ctx.SetOutput(1, ctx.opset() < 10 ? ctx.input_dtype(0) : DType::kBool, ctx.input_shape(0));
  return Status::Ok();
}

// ONNX TensorProto.DataType codes of the dtypes we compute with.
Result<DType> DTypeFromOnnx(const ShapeContext& ctx, int64_t code) {
  const DType dtype = DTypeFromOnnxCode(code);
  if (dtype != DType::kUndefined) return dtype;
  return Unsupported(ctx.node().Describe(), ": cast to ONNX data type ", code,
                     " is not supported (supported: float, float16, int64, int32, uint8, bool)");
}

Status CastRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kAny));
  auto to = ctx.attrs().RequireInt("to");
  if (!to.ok()) return ctx.Error(to.status().message());
  ITKIT_ASSIGN_OR_RETURN(DType out, DTypeFromOnnx(ctx, *to));
  ctx.SetOutput(0, out, ctx.input_shape(0));
  return Status::Ok();
}

Status CastLikeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kAny));
  ctx.SetOutput(0, ctx.input_dtype(1), ctx.input_shape(0));
  return Status::Ok();
}

// ---- binary / variadic ----------------------------------------------------

template <Types kIn, bool kBoolOut>
Status BinaryRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, kIn));
  ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 0, 1));
  ITKIT_ASSIGN_OR_RETURN(Shape out, Broadcast(ctx, ctx.input_shape(0), ctx.input_shape(1)));
  ctx.SetOutput(0, kBoolOut ? DType::kBool : ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status ModRule(ShapeContext& ctx) {
  const int64_t fmod = ctx.attrs().GetInt("fmod", 0);
  if (fmod != 0 && fmod != 1) return ctx.Error("fmod must be 0 or 1, got ", fmod);
  return BinaryRule<Types::kNumeric, false>(ctx);
}

// Equal also compares bools (opset 11+).
Status EqualRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  if (ctx.input_dtype(0) == DType::kBool) return BinaryRule<Types::kBool, true>(ctx);
  return BinaryRule<Types::kNumeric, true>(ctx);
}

// Pow: the exponent may have another numeric dtype; the output has the base's.
Status PowRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kSigned));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 1, Types::kNumeric));
  ITKIT_ASSIGN_OR_RETURN(Shape out, Broadcast(ctx, ctx.input_shape(0), ctx.input_shape(1)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

// PRelu: the slope broadcasts to X (unidirectionally); the output has X's shape.
Status PReluRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, Types::kSigned));
  ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 0, 1));
  ITKIT_ASSIGN_OR_RETURN(Shape out, Broadcast(ctx, ctx.input_shape(0), ctx.input_shape(1)));
  if (out != ctx.input_shape(0))
    return ctx.Error("slope of shape ", ShapeToString(ctx.input_shape(1)),
                     " does not broadcast to X of shape ", ShapeToString(ctx.input_shape(0)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

// Sum, Mean, Max, Min: one or more inputs of one dtype, all broadcast together.
template <Types kIn>
Status VariadicRule(ShapeContext& ctx) {
  if (ctx.num_inputs() < 1) return ctx.Error("expects at least one input");
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (!ctx.has_input(i)) return ctx.Error("input ", i, " is missing");
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 0, kIn));
  Shape out = ctx.input_shape(0);
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 0, i));
    ITKIT_ASSIGN_OR_RETURN(out, Broadcast(ctx, out, ctx.input_shape(i)));
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status WhereRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 3));
  if (ctx.input_dtype(0) != DType::kBool)
    return ctx.Error("condition must be bool, got ", DTypeName(ctx.input_dtype(0)));
  ITKIT_RETURN_IF_ERROR(CheckType(ctx, 1, Types::kAny));
  ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 1, 2));
  ITKIT_ASSIGN_OR_RETURN(Shape out, Broadcast(ctx, ctx.input_shape(0), ctx.input_shape(1)));
  ITKIT_ASSIGN_OR_RETURN(out, Broadcast(ctx, out, ctx.input_shape(2)));
  ctx.SetOutput(0, ctx.input_dtype(1), std::move(out));
  return Status::Ok();
}

// itkit.FusedElementwise: every input of one float dtype, all broadcast together; the
// output has at least `broadcast_rank` dims (inlined constants of higher rank).
Status FusedElementwiseRule(ShapeContext& ctx) {
  auto program = fused::ParseProgram(ctx.node());
  if (!program.ok()) return program.status();
  const size_t num_inputs = static_cast<size_t>(program->num_inputs);
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(num_inputs, num_inputs));
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.Error("input ", i, " is missing");
    ITKIT_RETURN_IF_ERROR(CheckType(ctx, i, Types::kFloat));
    ITKIT_RETURN_IF_ERROR(CheckSameType(ctx, 0, i));
  }
  Shape out = ctx.input_shape(0);
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    ITKIT_ASSIGN_OR_RETURN(out, Broadcast(ctx, out, ctx.input_shape(i)));
  }
  if (static_cast<int>(out.size()) < program->broadcast_rank)
    out.insert(out.begin(), static_cast<size_t>(program->broadcast_rank) - out.size(), 1);
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

}  // namespace

void AppendElementwise(std::vector<OpSchema>& table) {
  for (const char* op : {"Sigmoid", "HardSigmoid", "Tanh", "Erf", "Softplus", "Softsign", "Sqrt", "Exp",
                         "Log", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Tan", "Asin",
                         "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Elu", "Selu",
                         "LeakyRelu", "ThresholdedRelu", "Celu", "HardSwish"})
    table.push_back({"", op, &SameTypeUnary<Types::kFloat>});
  for (const char* op : {"Relu", "Abs", "Neg", "Sign", "Shrink"})
    table.push_back({"", op, &SameTypeUnary<Types::kNumeric>});
  table.push_back({"", "Not", &SameTypeUnary<Types::kBool>});
  table.push_back({"", "Identity", &SameTypeUnary<Types::kAny>});
  table.push_back({"", "IsNaN", &FloatPredicate});
  table.push_back({"", "IsInf", &FloatPredicate});
  table.push_back({"", "Clip", &ClipRule});
  table.push_back({"", "Dropout", &DropoutRule});
  table.push_back({"", "Cast", &CastRule});
  table.push_back({"", "CastLike", &CastLikeRule});

  for (const char* op : {"Add", "Sub", "Mul", "Div"})
    table.push_back({"", op, &BinaryRule<Types::kNumeric, false>});
  table.push_back({"", "Mod", &ModRule});
  table.push_back({"", "Pow", &PowRule});
  table.push_back({"", "PRelu", &PReluRule});
  table.push_back({"", "Equal", &EqualRule});
  for (const char* op : {"Less", "LessOrEqual", "Greater", "GreaterOrEqual"})
    table.push_back({"", op, &BinaryRule<Types::kNumeric, true>});
  for (const char* op : {"And", "Or", "Xor"}) table.push_back({"", op, &BinaryRule<Types::kBool, true>});
  for (const char* op : {"Max", "Min", "Sum"}) table.push_back({"", op, &VariadicRule<Types::kNumeric>});
  table.push_back({"", "Mean", &VariadicRule<Types::kFloat>});
  table.push_back({"", "Where", &WhereRule});
  table.push_back({kItkitDomain, "FusedElementwise", &FusedElementwiseRule});
}

}  // namespace itkit::shape_rules
