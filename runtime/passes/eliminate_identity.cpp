// Nodes that return their input unchanged: Identity, Dropout at inference (when nobody
// reads its mask), and a Cast to the dtype its input already has (torch exports
// `x.to(v.dtype)` after an attention softmax as one; SwinUNETR has eight).
#include "passes/graph_edit.h"
#include "passes/pass_list.h"
#include "passes/static_info.h"

namespace itkit::passes {

Status EliminateIdentity(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  const StaticInfoMap info(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& node = graph.nodes[i];
    if (node.inputs.empty() || node.inputs[0].empty() || node.outputs.empty()) continue;
    const bool identity = IsOp(node, "Identity");
    // Dropout is the identity at inference, as long as nobody reads its mask.
    const bool dropout = IsOp(node, "Dropout") && (node.outputs.size() < 2 || index.UseCount(node.outputs[1]) == 0);
    const DType from = info.Get(node.inputs[0]).dtype;
    const bool same_cast = IsOp(node, "Cast") && from != DType::kUndefined &&
                           DTypeFromOnnxCode(node.attrs.GetInt("to", 0)) == from;
    if (!(identity || dropout || same_cast)) continue;
    // A graph output must keep its name; leave that node in place.
    if (index.IsGraphOutput(node.outputs[0])) continue;
    ReplaceUses(graph, node.outputs[0], node.inputs[0]);
    dead[i] = true;
    changed = true;
  }
  if (changed) RemoveNodes(graph, dead);
  return Status::Ok();
}

}  // namespace itkit::passes
