#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {

Status EliminateIdentity(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& node = graph.nodes[i];
    const bool identity = IsOp(node, "Identity");
    // Dropout is the identity at inference, as long as nobody reads its mask.
    const bool dropout = IsOp(node, "Dropout") && (node.outputs.size() < 2 || index.UseCount(node.outputs[1]) == 0);
    if (!(identity || dropout) || node.inputs.empty() || node.inputs[0].empty()) continue;
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
