// Opset < 7 binary ops: `broadcast`=1 allowed B to be broadcast onto A, aligned at
// `axis` (default: trailing alignment). Opset 7 replaced this with numpy
// broadcasting; trailing alignment is the same thing, any other axis needs B
// padded with trailing 1s.
#include "ops/normalize.h"

namespace itkit::onnx_import {

Status NormalizeLegacyBroadcast(Node& node, NormalizeContext& ctx) {
  const bool has_axis = node.attrs.Has("axis");
  const int64_t broadcast = node.attrs.GetInt("broadcast", 0);
  int64_t axis = node.attrs.GetInt("axis", 0);
  node.attrs.Erase("broadcast");
  node.attrs.Erase("axis");
  // broadcast=0 demanded equal shapes, where numpy rules agree.
  if (broadcast == 0 || !has_axis || node.inputs.size() != 2) return Status::Ok();
  const std::string& b = node.inputs[1];
  const int ra = ctx.RankOf(node.inputs[0]);
  const int rb = ctx.RankOf(b);
  if (ra < 0 || rb < 0)
    return Unsupported(node.Describe(), ": legacy broadcast with axis=", axis,
                       " needs the ranks of both inputs, which the model does not declare");
  if (axis < 0) axis += ra;
  if (axis < 0 || axis > ra - rb)  // (not axis + rb > ra: `axis` is unchecked file data)
    return InvalidArgument(node.Describe(), ": legacy broadcast axis ", axis, " does not fit ranks ", ra, " and ", rb);
  const int64_t trailing = ra - axis - rb;
  if (trailing == 0) return Status::Ok();
  auto init = ctx.graph.initializers.find(b);
  if (init != ctx.graph.initializers.end()) {
    Shape shape = init->second.shape();
    shape.insert(shape.end(), static_cast<size_t>(trailing), 1);
    node.inputs[1] = ctx.AddInitializer(b + "_broadcast", init->second.Reshaped(shape));
    return Status::Ok();
  }
  // A computed B: unsqueeze it (opset-1 Unsqueeze takes `axes` as an attribute).
  Node unsqueeze;
  unsqueeze.op_type = "Unsqueeze";
  unsqueeze.name = ctx.FreshName(node.name.empty() ? b + "_broadcast" : node.name + "_broadcast");
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < trailing; ++i) axes.push_back(rb + i);
  unsqueeze.attrs.SetInts("axes", axes);
  unsqueeze.inputs = {b};
  unsqueeze.outputs = {ctx.FreshName(b + "_broadcast")};
  ctx.ranks[unsqueeze.outputs[0]] = ra - static_cast<int>(axis);
  node.inputs[1] = unsqueeze.outputs[0];
  ctx.new_nodes.push_back(std::move(unsqueeze));
  return Status::Ok();
}

// Gemm-6 `broadcast` switched C's unidirectional broadcasting on; from opset 7 it is
// always on, which accepts everything the old form did.
Status NormalizeGemmBroadcast(Node& node, NormalizeContext& /*ctx*/) {
  node.attrs.Erase("broadcast");
  return Status::Ok();
}

// PRelu-6 applied a rank-1 slope per channel (axis 1); opset 7 switched to numpy
// broadcasting, where [C] would align with the last axis instead.
Status NormalizePReluSlope(Node& node, NormalizeContext& ctx) {
  if (node.inputs.size() != 2) return Status::Ok();
  const std::string& slope = node.inputs[1];
  const int rx = ctx.RankOf(node.inputs[0]);
  if (ctx.RankOf(slope) != 1 || rx == 2) return Status::Ok();  // [N,C]: numpy agrees
  auto init = ctx.graph.initializers.find(slope);
  if (init != ctx.graph.initializers.end() && init->second.size() == 1) return Status::Ok();  // shared slope
  if (rx < 0 || init == ctx.graph.initializers.end())
    return Unsupported(node.Describe(), ": opset-6 per-channel slope needs a constant slope and an input of "
                       "declared rank");
  if (rx < 2) return Status::Ok();
  Shape shape = init->second.shape();
  shape.insert(shape.end(), static_cast<size_t>(rx - 2), 1);
  node.inputs[1] = ctx.AddInitializer(slope + "_per_channel", init->second.Reshaped(shape));
  return Status::Ok();
}

}  // namespace itkit::onnx_import
