// Shape rules of the tensor-manipulation family: Reshape, Flatten, Transpose,
// Squeeze, Unsqueeze, Concat, Split, Slice, Expand, Tile, Pad, Gather, ScatterND, Shape,
// Size, ConstantOfShape, Range, NonZero, Constant. Shape-valued inputs must be constant at
// planning time (the planner folds values computed from shapes), since every output
// shape is fixed when a plan is made.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "shape_infer/scatter_reduction.h"
#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

Result<Shape> CheckedShape(const ShapeContext& ctx, Shape shape) {
  auto count = CheckedElementCount(shape);
  if (!count.ok()) return ctx.Error(count.status().message());
  return shape;
}

Status ReshapeRule(ShapeContext& ctx) {
  std::vector<int64_t> target;
  if (ctx.opset() < 5) {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
    auto attr = ctx.attrs().RequireInts("shape");
    if (!attr.ok()) return ctx.Error(attr.status().message());
    target = *attr;
  } else {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
    ITKIT_ASSIGN_OR_RETURN(target, ctx.ConstantInts(1, "shape"));
  }
  const bool allowzero = ctx.attrs().GetInt("allowzero", 0) != 0;
  const Shape& in = ctx.input_shape(0);
  Shape out(target.size());
  int infer = -1;
  int64_t known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t v = target[i];
    if (v == -1) {
      if (infer >= 0) return ctx.Error("shape ", ShapeToString(target), " has more than one -1");
      infer = static_cast<int>(i);
      continue;
    }
    if (v == 0 && !allowzero) {  // 0 copies the input's dim
      if (i >= in.size()) return ctx.Error("shape ", ShapeToString(target), " copies dim ", i, " of a rank-", in.size(), " input");
      v = in[i];
    }
    if (v < 0) return ctx.Error("shape ", ShapeToString(target), " has invalid dim ", v);
    has_zero = has_zero || v == 0;
    out[i] = v;
    if (v != 0 && known > std::numeric_limits<int64_t>::max() / v)
      return ctx.Error("shape ", ShapeToString(target), " overflows");
    known *= v;
  }
  const int64_t count = ElementCount(in);
  if (infer >= 0) {
    if (has_zero)
      return ctx.Error("shape ", ShapeToString(target), ": -1 cannot be inferred next to a zero dim");
    if (count % known != 0)
      return ctx.Error("cannot reshape ", ShapeToString(in), " to ", ShapeToString(target));
    out[static_cast<size_t>(infer)] = count / known;
  } else if (known != count) {
    return ctx.Error("cannot reshape ", ShapeToString(in), " (", count, " elements) to ", ShapeToString(out));
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status FlattenRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const Shape& in = ctx.input_shape(0);
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t axis = ctx.attrs().GetInt("axis", 1);
  if (axis < -rank || axis > rank) return ctx.Error("axis ", axis, " is out of range for rank ", rank);
  if (axis < 0) axis += rank;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < rank; ++i) (i < axis ? outer : inner) *= in[static_cast<size_t>(i)];
  ctx.SetOutput(0, ctx.input_dtype(0), {outer, inner});
  return Status::Ok();
}

Status TransposeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const Shape& in = ctx.input_shape(0);
  const size_t rank = in.size();
  std::vector<int64_t> perm = ctx.attrs().GetInts("perm");
  if (perm.empty() && rank > 0) {
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  }
  if (perm.size() != rank) return ctx.Error("perm ", ShapeToString(perm), " does not match rank ", rank);
  std::vector<bool> seen(rank, false);
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t p = perm[i];
    if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)])
      return ctx.Error("perm ", ShapeToString(perm), " is not a permutation");
    seen[static_cast<size_t>(p)] = true;
    out[i] = in[static_cast<size_t>(p)];
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status SqueezeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 2));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> axes, ctx.IntsFromAttrOrInput("axes", 1, {}));
  const Shape& in = ctx.input_shape(0);
  const int rank = static_cast<int>(in.size());
  std::vector<bool> drop(in.size(), false);
  if (axes.empty()) {
    for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
  }
  for (int64_t a : axes) {
    ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(a, rank, ctx.node()));
    if (drop[static_cast<size_t>(axis)]) return ctx.Error("axis ", a, " is listed twice");
    if (in[static_cast<size_t>(axis)] != 1)
      return ctx.Error("cannot squeeze axis ", a, " of size ", in[static_cast<size_t>(axis)], " in shape ", ShapeToString(in));
    drop[static_cast<size_t>(axis)] = true;
  }
  Shape out;
  for (size_t i = 0; i < in.size(); ++i)
    if (!drop[i]) out.push_back(in[i]);
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status UnsqueezeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 2));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> axes, ctx.IntsFromAttrOrInput("axes", 1, {}));
  if (axes.empty()) return ctx.Error("axes must not be empty");
  const Shape& in = ctx.input_shape(0);
  const int out_rank = static_cast<int>(in.size() + axes.size());
  std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
  for (int64_t a : axes) {
    ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(a, out_rank, ctx.node()));
    if (inserted[static_cast<size_t>(axis)]) return ctx.Error("axis ", a, " is listed twice");
    inserted[static_cast<size_t>(axis)] = true;
  }
  Shape out;
  size_t next = 0;
  for (int i = 0; i < out_rank; ++i) out.push_back(inserted[static_cast<size_t>(i)] ? 1 : in[next++]);
  ITKIT_ASSIGN_OR_RETURN(out, CheckedShape(ctx, std::move(out)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status ConcatRule(ShapeContext& ctx) {
  if (ctx.num_inputs() < 1) return ctx.Error("expects at least one input");
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (!ctx.has_input(i)) return ctx.Error("input ", i, " is missing");
  auto axis_attr = ctx.attrs().RequireInt("axis");
  if (!axis_attr.ok()) return ctx.Error(axis_attr.status().message());
  const Shape& first = ctx.input_shape(0);
  if (first.empty()) return ctx.Error("cannot concatenate scalars");
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(*axis_attr, static_cast<int>(first.size()), ctx.node()));
  Shape out = first;
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    const Shape& s = ctx.input_shape(i);
    if (ctx.input_dtype(i) != ctx.input_dtype(0))
      return ctx.Error("input ", i, " has dtype ", DTypeName(ctx.input_dtype(i)), ", input 0 ", DTypeName(ctx.input_dtype(0)));
    bool ok = s.size() == first.size();
    for (size_t d = 0; ok && d < s.size(); ++d) ok = static_cast<int>(d) == axis || s[d] == first[d];
    if (!ok)
      return ctx.Error("input ", i, " of shape ", ShapeToString(s), " does not match input 0 of shape ",
                       ShapeToString(first), " outside axis ", axis);
    out[static_cast<size_t>(axis)] += s[static_cast<size_t>(axis)];
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status SplitRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 2));
  const Shape& in = ctx.input_shape(0);
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int>(in.size()), ctx.node()));
  if (in.empty()) return ctx.Error("cannot split a scalar");
  const int64_t dim = in[static_cast<size_t>(axis)];
  const int64_t n = static_cast<int64_t>(ctx.num_outputs());
  if (n < 1) return ctx.Error("has no outputs");
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> split, ctx.IntsFromAttrOrInput("split", 1, {}));
  if (!split.empty()) {
    if (static_cast<int64_t>(split.size()) != n)
      return ctx.Error("split ", ShapeToString(split), " has ", split.size(), " entries for ", n, " outputs");
    int64_t sum = 0;
    for (int64_t s : split) {
      if (s < 0) return ctx.Error("split ", ShapeToString(split), " has a negative size");
      sum += s;
    }
    if (sum != dim) return ctx.Error("split ", ShapeToString(split), " does not add up to dim ", dim);
  } else if (dim % n == 0) {
    split.assign(static_cast<size_t>(n), dim / n);
  } else if (ctx.opset() >= 18) {  // opset 18: the last chunk is smaller
    const int64_t chunk = (dim + n - 1) / n;
    for (int64_t i = 0; i < n; ++i) split.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
  } else {
    return ctx.Error("dim ", dim, " cannot be split evenly into ", n, " outputs");
  }
  for (size_t i = 0; i < split.size(); ++i) {
    Shape s = in;
    s[static_cast<size_t>(axis)] = split[i];
    ctx.SetOutput(i, ctx.input_dtype(0), std::move(s));
  }
  return Status::Ok();
}

// Clamps one axis of a Slice (ONNX rules, INT64_MIN/MAX included) into a first
// element, a step and an element count. The CPU kernel repeats this arithmetic.
struct SliceDim {
  int64_t start = 0, step = 1, count = 0;
};

SliceDim ResolveSlice(int64_t start, int64_t end, int64_t step, int64_t dim) {
  SliceDim r;
  r.step = step;
  if (dim == 0) return r;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    r.count = end > start ? (end - start - 1) / step + 1 : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    const int64_t abs_step = step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step;
    r.count = start > end ? (start - end - 1) / abs_step + 1 : 0;
  }
  r.start = start;
  return r;
}

Status SliceRule(ShapeContext& ctx) {
  std::vector<int64_t> starts, ends, axes, steps;
  if (ctx.opset() < 10) {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
    auto s = ctx.attrs().RequireInts("starts");
    auto e = ctx.attrs().RequireInts("ends");
    if (!s.ok() || !e.ok()) return ctx.Error("attributes 'starts' and 'ends' are required");
    starts = *s;
    ends = *e;
    axes = ctx.attrs().GetInts("axes");
  } else {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 5));
    ITKIT_ASSIGN_OR_RETURN(starts, ctx.ConstantInts(1, "starts"));
    ITKIT_ASSIGN_OR_RETURN(ends, ctx.ConstantInts(2, "ends"));
    if (ctx.has_input(3)) {
      ITKIT_ASSIGN_OR_RETURN(axes, ctx.ConstantInts(3, "axes"));
    }
    if (ctx.has_input(4)) {
      ITKIT_ASSIGN_OR_RETURN(steps, ctx.ConstantInts(4, "steps"));
    }
  }
  const Shape& in = ctx.input_shape(0);
  const int rank = static_cast<int>(in.size());
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return ctx.Error("starts, ends, axes and steps must have the same length");
  Shape out = in;
  std::vector<bool> seen(in.size(), false);
  for (size_t i = 0; i < starts.size(); ++i) {
    ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(axes[i], rank, ctx.node()));
    if (seen[static_cast<size_t>(axis)]) return ctx.Error("axis ", axes[i], " is listed twice");
    seen[static_cast<size_t>(axis)] = true;
    if (steps[i] == 0) return ctx.Error("step 0 on axis ", axes[i]);
    out[static_cast<size_t>(axis)] = ResolveSlice(starts[i], ends[i], steps[i], in[static_cast<size_t>(axis)]).count;
  }
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status ExpandRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> shape, ctx.ConstantInts(1, "shape"));
  for (int64_t d : shape)
    if (d < 0) return ctx.Error("shape ", ShapeToString(shape), " has a negative dim");
  auto out = BroadcastShapes(ctx.input_shape(0), shape);
  if (!out.ok()) return ctx.Error(out.status().message());
  ITKIT_ASSIGN_OR_RETURN(Shape checked, CheckedShape(ctx, *out));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(checked));
  return Status::Ok();
}

Status TileRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> repeats, ctx.ConstantInts(1, "repeats"));
  const Shape& in = ctx.input_shape(0);
  if (repeats.size() != in.size())
    return ctx.Error("repeats ", ShapeToString(repeats), " does not match rank ", in.size());
  Shape out(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (repeats[i] < 0) return ctx.Error("repeats ", ShapeToString(repeats), " has a negative entry");
    if (in[i] != 0 && repeats[i] > std::numeric_limits<int64_t>::max() / in[i])
      return ctx.Error("repeats ", ShapeToString(repeats), " overflow the shape");
    out[i] = in[i] * repeats[i];
  }
  ITKIT_ASSIGN_OR_RETURN(out, CheckedShape(ctx, std::move(out)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status PadRule(ShapeContext& ctx) {
  const std::string mode = ctx.attrs().GetString("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge")
    return Unsupported(ctx.node().Describe(), ": pad mode '", mode, "' is not supported");
  std::vector<int64_t> pads;
  const Shape& in = ctx.input_shape(0);
  const int rank = static_cast<int>(in.size());
  std::vector<int64_t> axes;
  if (ctx.opset() < 11) {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
    auto attr = ctx.attrs().RequireInts("pads");
    if (!attr.ok()) return ctx.Error(attr.status().message());
    pads = *attr;
  } else {
    ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 4));
    ITKIT_ASSIGN_OR_RETURN(pads, ctx.ConstantInts(1, "pads"));
    if (ctx.has_input(2)) {
      if (ctx.input_dtype(2) != ctx.input_dtype(0)) return ctx.Error("constant_value must have the data's dtype");
      if (ElementCount(ctx.input_shape(2)) != 1) return ctx.Error("constant_value must be a scalar");
    }
    if (ctx.has_input(3)) {
      ITKIT_ASSIGN_OR_RETURN(axes, ctx.ConstantInts(3, "axes"));
    }
  }
  if (axes.empty())
    for (int i = 0; i < rank; ++i) axes.push_back(i);
  if (pads.size() != 2 * axes.size())
    return ctx.Error("pads ", ShapeToString(pads), " must have 2 entries per padded axis (", axes.size(), ")");
  Shape out = in;
  const size_t n = axes.size();
  std::vector<bool> seen(in.size(), false);
  for (size_t i = 0; i < n; ++i) {
    ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(axes[i], rank, ctx.node()));
    if (seen[static_cast<size_t>(axis)]) return ctx.Error("axis ", axes[i], " is listed twice");
    seen[static_cast<size_t>(axis)] = true;
    const int64_t dim = in[static_cast<size_t>(axis)];
    const int64_t before = pads[i], after = pads[i + n];
    const int64_t size = dim + before + after;
    if (size < 0) return ctx.Error("pads ", ShapeToString(pads), " crop axis ", axis, " of size ", dim, " below zero");
    if (mode != "constant" && dim == 0 && size > 0)
      return ctx.Error(mode, " padding of the empty axis ", axis);
    out[static_cast<size_t>(axis)] = size;
  }
  ITKIT_ASSIGN_OR_RETURN(out, CheckedShape(ctx, std::move(out)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

Status GatherRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(2, 2));
  const Shape& data = ctx.input_shape(0);
  if (data.empty()) return ctx.Error("cannot gather from a scalar");
  if (ctx.input_dtype(1) != DType::kI64 && ctx.input_dtype(1) != DType::kI32)
    return ctx.Error("indices must be int64 or int32, got ", DTypeName(ctx.input_dtype(1)));
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(ctx.attrs().GetInt("axis", 0), static_cast<int>(data.size()), ctx.node()));
  const int64_t dim = data[static_cast<size_t>(axis)];
  if (const Tensor* idx = ctx.input_constant(1)) {
    for (int64_t i = 0; i < idx->size(); ++i) {
      const int64_t v = idx->GetAsInt64(i);
      if (v < -dim || v >= dim) return ctx.Error("index ", v, " is out of range for axis ", axis, " of size ", dim);
    }
  }
  Shape out(data.begin(), data.begin() + axis);
  for (int64_t d : ctx.input_shape(1)) out.push_back(d);
  for (size_t d = static_cast<size_t>(axis) + 1; d < data.size(); ++d) out.push_back(data[d]);
  ITKIT_ASSIGN_OR_RETURN(out, CheckedShape(ctx, std::move(out)));
  ctx.SetOutput(0, ctx.input_dtype(0), std::move(out));
  return Status::Ok();
}

// ScatterND: the output is `data`; `updates` has shape indices[:-1] + data[k:], where
// k = indices' last dim (<= data's rank) indexes data's first k axes.
Status ScatterNDRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 3));
  ITKIT_RETURN_IF_ERROR(ScatterReductionOf(ctx.node()).status());
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  if (data.empty()) return ctx.Error("data must have rank >= 1");
  if (idx.empty()) return ctx.Error("indices must have rank >= 1");
  if (ctx.input_dtype(1) != DType::kI64 && ctx.input_dtype(1) != DType::kI32)
    return ctx.Error("indices must be int64 or int32, got ", DTypeName(ctx.input_dtype(1)));
  if (ctx.input_dtype(2) != ctx.input_dtype(0))
    return ctx.Error("updates have dtype ", DTypeName(ctx.input_dtype(2)), ", data ", DTypeName(ctx.input_dtype(0)));
  const int64_t k = idx.back();
  if (k < 0 || k > static_cast<int64_t>(data.size()))
    return ctx.Error("indices' last dim ", k, " exceeds data's rank ", data.size());
  Shape expected(idx.begin(), idx.end() - 1);
  expected.insert(expected.end(), data.begin() + k, data.end());
  if (ctx.input_shape(2) != expected)
    return ctx.Error("updates have shape ", ShapeToString(ctx.input_shape(2)), ", expected ", ShapeToString(expected));
  if (const Tensor* t = ctx.input_constant(1)) {
    for (int64_t i = 0; i < t->size(); ++i) {
      const int64_t v = t->GetAsInt64(i), dim = data[static_cast<size_t>(i % k)];
      if (v < -dim || v >= dim) return ctx.Error("index ", v, " is out of range for axis ", i % k, " of size ", dim);
    }
  }
  ctx.SetOutput(0, ctx.input_dtype(0), data);
  return Status::Ok();
}

Status ShapeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const int64_t rank = ctx.input_rank(0);
  int64_t start = ctx.attrs().GetInt("start", 0), end = ctx.attrs().GetInt("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  ctx.SetOutput(0, DType::kI64, {std::max<int64_t>(0, end - start)});
  return Status::Ok();
}

Status SizeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  ctx.SetOutput(0, DType::kI64, {});
  return Status::Ok();
}

Status ConstantOfShapeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> shape, ctx.ConstantInts(0, "shape"));
  for (int64_t d : shape)
    if (d < 0) return ctx.Error("shape ", ShapeToString(shape), " has a negative dim");
  DType dtype = DType::kF32;
  if (const Attribute* v = ctx.attrs().Find("value")) {
    if (v->kind != Attribute::Kind::kTensor || !v->t.defined() || v->t.size() != 1)
      return ctx.Error("attribute 'value' must be a one-element tensor");
    dtype = v->t.dtype();
  }
  ITKIT_ASSIGN_OR_RETURN(Shape out, CheckedShape(ctx, std::move(shape)));
  ctx.SetOutput(0, dtype, std::move(out));
  return Status::Ok();
}

Status RangeRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(3, 3));
  const DType dt = ctx.input_dtype(0);
  if (dt != DType::kF32 && dt != DType::kI64 && dt != DType::kI32)
    return ctx.Error("dtype ", DTypeName(dt), " is not supported");
  double v[3];
  for (size_t i = 0; i < 3; ++i) {
    if (ctx.input_dtype(i) != dt) return ctx.Error("start, limit and delta must have one dtype");
    const Tensor* t = ctx.input_constant(i);
    if (!t)
      return Unsupported(ctx.node().Describe(), ": input ", i,
                         " must be a constant or computable from shapes at planning time");
    if (t->size() != 1) return ctx.Error("input ", i, " must be a scalar");
    v[i] = t->GetAsDouble(0);
  }
  if (v[2] == 0) return ctx.Error("delta is zero");
  const double n = std::ceil((v[1] - v[0]) / v[2]);
  if (!(n < 1e15)) return ctx.Error("range of ", n, " elements is too large");
  ctx.SetOutput(0, dt, {n > 0 ? static_cast<int64_t>(n) : 0});
  return Status::Ok();
}

// The output shape depends on the values: known only for a constant input.
Status NonZeroRule(ShapeContext& ctx) {
  ITKIT_RETURN_IF_ERROR(ctx.RequireInputs(1, 1));
  const Tensor* t = ctx.input_constant(0);
  if (!t)
    return Unsupported(ctx.node().Describe(),
                       ": NonZero has a data-dependent output shape; only a constant input is supported");
  int64_t count = 0;
  for (int64_t i = 0; i < t->size(); ++i) count += t->GetAsDouble(i) != 0.0;
  ctx.SetOutput(0, DType::kI64, {static_cast<int64_t>(ctx.input_rank(0)), count});
  return Status::Ok();
}

// Normally folded by the importer; supported for completeness.
Status ConstantRule(ShapeContext& ctx) {
  const Attributes& a = ctx.attrs();
  if (const Attribute* v = a.Find("value")) {
    if (v->kind != Attribute::Kind::kTensor || !v->t.defined()) return ctx.Error("attribute 'value' is not a tensor");
    ctx.SetOutput(0, v->t.dtype(), v->t.shape());
  } else if (a.Find("value_float")) {
    ctx.SetOutput(0, DType::kF32, {});
  } else if (a.Find("value_int")) {
    ctx.SetOutput(0, DType::kI64, {});
  } else if (const Attribute* fs = a.Find("value_floats")) {
    ctx.SetOutput(0, DType::kF32, {static_cast<int64_t>(fs->floats.size())});
  } else if (const Attribute* is = a.Find("value_ints")) {
    ctx.SetOutput(0, DType::kI64, {static_cast<int64_t>(is->ints.size())});
  } else {
    return Unsupported(ctx.node().Describe(), ": only value, value_float(s) and value_int(s) are supported");
  }
  return Status::Ok();
}

}  // namespace

void AppendTensorOps(std::vector<OpSchema>& table) {
  table.push_back({"", "Reshape", &ReshapeRule});
  table.push_back({"", "Flatten", &FlattenRule});
  table.push_back({"", "Transpose", &TransposeRule});
  table.push_back({"", "Squeeze", &SqueezeRule});
  table.push_back({"", "Unsqueeze", &UnsqueezeRule});
  table.push_back({"", "Concat", &ConcatRule});
  table.push_back({"", "Split", &SplitRule});
  table.push_back({"", "Slice", &SliceRule});
  table.push_back({"", "Expand", &ExpandRule});
  table.push_back({"", "Tile", &TileRule});
  table.push_back({"", "Pad", &PadRule});
  table.push_back({"", "Gather", &GatherRule});
  table.push_back({"", "ScatterND", &ScatterNDRule});
  table.push_back({"", "Shape", &ShapeRule});
  table.push_back({"", "Size", &SizeRule});
  table.push_back({"", "ConstantOfShape", &ConstantOfShapeRule});
  table.push_back({"", "Range", &RangeRule});
  table.push_back({"", "NonZero", &NonZeroRule});
  table.push_back({"", "Constant", &ConstantRule});
}

}  // namespace itkit::shape_rules
