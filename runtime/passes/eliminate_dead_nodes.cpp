// Removes nodes none of whose outputs is read by another node or the graph (left
// behind by other passes, e.g. the Shape node of a recognised GroupNorm pattern).
#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {

Status EliminateDeadNodes(Graph& graph, bool& changed) {
  // Backwards, so a chain of dead nodes goes in one sweep.
  std::vector<bool> dead(graph.nodes.size(), false);
  std::unordered_map<std::string, int> uses;
  for (const ValueInfo& out : graph.outputs) ++uses[out.name];
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    const Node& node = graph.nodes[i];
    bool used = false;
    for (const std::string& out : node.outputs) used = used || (!out.empty() && uses[out] > 0);
    if (!used) {
      dead[i] = true;
      changed = true;
      continue;
    }
    for (const std::string& in : node.inputs)
      if (!in.empty()) ++uses[in];
  }
  if (changed) {
    RemoveNodes(graph, dead);
    RemoveUnusedInitializers(graph);
  }
  return Status::Ok();
}

}  // namespace itkit::passes
