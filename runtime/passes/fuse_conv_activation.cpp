// Conv (+bias) → Relu/LeakyRelu/Sigmoid/Tanh becomes itkit.FusedConv with the
// activation applied in the convolution's epilogue (one pass over the output).
#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {

Status FuseConvActivation(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& conv = graph.nodes[i];
    // An activation-less FusedConv (split_conv_over_concat's last part) takes one too.
    const bool bare_fused = conv.domain == kItkitDomain && conv.op_type == "FusedConv" &&
                            conv.attrs.GetString("activation", "").empty();
    if ((!IsOp(conv, "Conv") && !bare_fused) || dead[i]) continue;
    const int act_index = index.SoleConsumer(conv.outputs[0]);
    if (act_index < 0) continue;
    Node& act = graph.nodes[static_cast<size_t>(act_index)];
    if (!IsEpilogueActivation(act)) continue;
    conv.domain = kItkitDomain;
    conv.op_type = "FusedConv";
    TakeActivation(conv, act);
    conv.outputs[0] = act.outputs[0];
    dead[static_cast<size_t>(act_index)] = true;
    changed = true;
  }
  if (changed) RemoveNodes(graph, dead);
  return Status::Ok();
}

}  // namespace itkit::passes
