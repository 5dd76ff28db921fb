// ResEnc's residual: GroupNorm (activation-less) → Add(norm, skip) [→ Relu/LeakyRelu/
// Sigmoid/Tanh] becomes one itkit.GroupNorm with `skip` as its 4th input (residual):
// Y = act(norm + skip), one read of the skip and one write instead of two more passes.
//
// Fused only when the norm's output is read by the Add alone (and is no graph output),
// the activation (if any) is the Add's sole reader, either Add operand order, and the
// skip provably has exactly the norm output's shape (static_info.h: same symbolic dims;
// a broadcasting skip, a constant, or an unprovable shape is left alone). A norm that
// already carries an activation is not touched: act(norm) + skip is another function.
// Runs after fuse_norm_activation (which turns InstanceNormalization into GroupNorm
// and leaves this norm alone, its reader being the Add).
#include "passes/graph_edit.h"
#include "passes/pass_list.h"
#include "passes/static_info.h"

namespace itkit::passes {

Status FuseNormResidual(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  const StaticInfoMap info(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  bool fused = false;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& norm = graph.nodes[i];
    if (dead[i] || norm.domain != kItkitDomain || norm.op_type != "GroupNorm" || norm.inputs.size() != 3 ||
        norm.outputs.size() != 1 || !norm.attrs.GetString("activation", "").empty())
      continue;
    const int add_index = index.SoleConsumer(norm.outputs[0]);
    if (add_index < 0 || dead[static_cast<size_t>(add_index)]) continue;
    const Node& add = graph.nodes[static_cast<size_t>(add_index)];
    if (!IsOp(add, "Add") || add.inputs.size() != 2 || add.outputs.size() != 1) continue;
    const std::string& skip = add.inputs[0] == norm.outputs[0] ? add.inputs[1] : add.inputs[0];
    if (skip.empty() || skip == norm.outputs[0] || Constant(graph, skip)) continue;
    // Exactly the output's shape (X's), and its dtype: no broadcasting in the fused op.
    const StaticInfo& x = info.Get(norm.inputs[0]);
    const StaticInfo& r = info.Get(skip);
    if (!SameShape(x, r) || x.dtype == DType::kUndefined || x.dtype != r.dtype) continue;

    Node fused_node = norm;
    fused_node.inputs.push_back(skip);
    std::string output = add.outputs[0];
    int last = add_index;
    const int act_index = index.SoleConsumer(output);
    if (act_index >= 0 && !dead[static_cast<size_t>(act_index)] &&
        IsEpilogueActivation(graph.nodes[static_cast<size_t>(act_index)])) {
      const Node& act = graph.nodes[static_cast<size_t>(act_index)];
      TakeActivation(fused_node, act);
      output = act.outputs[0];
      last = act_index;
    }
    fused_node.outputs = {output};
    // The fused node reads the skip, which may be computed after the norm: it takes
    // the place of the last absorbed node, so the node list stays topologically sorted.
    dead[i] = true;
    dead[static_cast<size_t>(add_index)] = true;
    graph.nodes[static_cast<size_t>(last)] = std::move(fused_node);
    dead[static_cast<size_t>(last)] = false;
    fused = true;
  }
  if (fused) {
    RemoveNodes(graph, dead);
    changed = true;
  }
  return Status::Ok();
}

}  // namespace itkit::passes
