#include "itkit/shape_inference.h"

#include <algorithm>

namespace itkit {

ShapeContext::ShapeContext(const Node& node, std::vector<const ValueDesc*> inputs, int64_t opset)
    : node_(node), inputs_(std::move(inputs)), opset_(opset), outputs_(node.outputs.size()) {}

Result<std::vector<int64_t>> ShapeContext::ConstantInts(size_t i, const char* what) const {
  const Tensor* t = input_constant(i);
  if (!t)
    return Unsupported(node_.Describe(), ": input ", i, " (", what,
                       ") must be a constant or computable from shapes at planning time");
  if (t->dtype() != DType::kI64 && t->dtype() != DType::kI32)
    return Error("input ", i, " (", what, ") must be int64 or int32, got ", DTypeName(t->dtype()));
  return t->ToInt64Vector();
}

Result<std::vector<int64_t>> ShapeContext::IntsFromAttrOrInput(const char* attr, size_t i,
                                                                std::vector<int64_t> fallback) const {
  if (const Attribute* a = node_.attrs.Find(attr)) {
    if (a->kind != Attribute::Kind::kInts) return Error("attribute '", attr, "' must be a list of ints");
    return a->ints;
  }
  if (has_input(i)) return ConstantInts(i, attr);
  return fallback;
}

void ShapeContext::SetOutput(size_t i, DType dtype, Shape shape) {
  if (i >= outputs_.size()) return;  // optional output the graph does not use
  outputs_[i].dtype = dtype;
  outputs_[i].shape = std::move(shape);
}

Status ShapeContext::RequireInputs(size_t min_count, size_t max_count) const {
  size_t present = 0;
  for (size_t i = 0; i < inputs_.size(); ++i) present = inputs_[i] ? i + 1 : present;
  if (present < min_count || inputs_.size() > max_count)
    return Error("expects ", min_count, (min_count == max_count ? "" : StrCat("..", max_count)),
                 " inputs, got ", inputs_.size());
  for (size_t i = 0; i < min_count; ++i)
    if (!inputs_[i]) return Error("required input ", i, " is missing");
  return Status::Ok();
}

Result<int> NormalizeAxis(int64_t axis, int rank, const Node& node) {
  if (axis < -rank || axis >= std::max(rank, 1))
    return InvalidArgument(node.Describe(), ": axis ", axis, " is out of range for rank ", rank);
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

Result<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      return InvalidArgument("shapes ", ShapeToString(a), " and ", ShapeToString(b),
                             " cannot be broadcast");
    }
  }
  return out;
}

}  // namespace itkit
