// InstanceNormalization becomes itkit.GroupNorm (num_groups = C), and a GroupNorm
// followed by Relu/LeakyRelu/Sigmoid/Tanh takes the activation into its epilogue:
// nnU-Net's Conv→InstanceNorm→LeakyReLU then reads and writes the tensor once.
#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {

Status FuseNormActivation(Graph& graph, bool& changed) {
  // InstanceNormalization → GroupNorm(num_groups = C) when C is known from the scale.
  for (Node& node : graph.nodes) {
    if (!IsOp(node, "InstanceNormalization") || node.inputs.size() != 3) continue;
    const Tensor* scale = Constant(graph, node.inputs[1]);
    const Tensor* bias = Constant(graph, node.inputs[2]);
    if (!scale || !bias || scale->rank() != 1 || bias->rank() != 1 || scale->dtype() != DType::kF32) continue;
    node.domain = kItkitDomain;
    node.op_type = "GroupNorm";
    node.attrs.SetInt("num_groups", scale->dim(0));
    node.attrs.SetFloat("epsilon", node.attrs.GetFloat("epsilon", 1e-5f));
    changed = true;
  }
  GraphIndex index(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  bool fused = false;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& norm = graph.nodes[i];
    if (norm.domain != kItkitDomain || norm.op_type != "GroupNorm" || norm.attrs.Has("activation")) continue;
    const int act_index = index.SoleConsumer(norm.outputs[0]);
    if (act_index < 0) continue;
    Node& act = graph.nodes[static_cast<size_t>(act_index)];
    if (!IsEpilogueActivation(act)) continue;
    TakeActivation(norm, act);
    norm.outputs[0] = act.outputs[0];
    dead[static_cast<size_t>(act_index)] = true;
    fused = true;
  }
  if (fused) {
    RemoveNodes(graph, dead);
    changed = true;
  }
  return Status::Ok();
}

}  // namespace itkit::passes
