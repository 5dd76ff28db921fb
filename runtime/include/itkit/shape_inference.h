// Shape inference is separate from execution: one rule per op computes output
// dtypes and shapes from input dtypes/shapes (and the values of inputs that are
// constant, e.g. a Reshape target). Rules live in runtime/shape_infer/<family>.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "itkit/graph.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit {

// What is known about a value while planning.
struct ValueDesc {
  DType dtype = DType::kUndefined;
  Shape shape;
  const Tensor* constant = nullptr;  // host value when known at planning time
  // Physical layout in a kernel signature: false = row-major in `shape`'s order;
  // true = channels-last, i.e. `shape` [N, C, D, H, W] stored as [N, D, H, W, C]
  // (Backend::prefers_channels_last). Shape inference ignores it: shapes stay logical.
  bool channels_last = false;
};

class ShapeContext {
 public:
  ShapeContext(const Node& node, std::vector<const ValueDesc*> inputs, int64_t opset);

  const Node& node() const { return node_; }
  const Attributes& attrs() const { return node_.attrs; }
  int64_t opset() const { return opset_; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return node_.outputs.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  const ValueDesc& input(size_t i) const { return *inputs_[i]; }
  DType input_dtype(size_t i) const { return inputs_[i]->dtype; }
  const Shape& input_shape(size_t i) const { return inputs_[i]->shape; }
  int input_rank(size_t i) const { return static_cast<int>(inputs_[i]->shape.size()); }
  const Tensor* input_constant(size_t i) const { return has_input(i) ? inputs_[i]->constant : nullptr; }

  // Values of a constant integer input (e.g. Reshape's shape), or an error naming it.
  Result<std::vector<int64_t>> ConstantInts(size_t i, const char* what) const;
  // Integer list from attribute `attr` if present, else from constant input i (the
  // opset-13 move of axes/split/pads from attributes to inputs), else `fallback`.
  Result<std::vector<int64_t>> IntsFromAttrOrInput(const char* attr, size_t i,
                                                   std::vector<int64_t> fallback) const;

  void SetOutput(size_t i, DType dtype, Shape shape);
  const std::vector<ValueDesc>& outputs() const { return outputs_; }

  // An InvalidArgument error prefixed with the node's description.
  template <typename... Args>
  Status Error(const Args&... args) const { return InvalidArgument(node_.Describe(), ": ", args...); }
  Status RequireInputs(size_t min_count, size_t max_count) const;

 private:
  const Node& node_;
  std::vector<const ValueDesc*> inputs_;
  int64_t opset_;
  std::vector<ValueDesc> outputs_;
};

using ShapeFn = Status (*)(ShapeContext&);

// Normalises a possibly negative axis for a tensor of `rank`, or fails.
Result<int> NormalizeAxis(int64_t axis, int rank, const Node& node);
// Numpy multidirectional broadcasting of two shapes.
Result<Shape> BroadcastShapes(const Shape& a, const Shape& b);

}  // namespace itkit
