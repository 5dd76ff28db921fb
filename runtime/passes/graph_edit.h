// Small helpers the passes share for reading and rewriting a Graph.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "itkit/graph.h"

namespace itkit::passes {

class GraphIndex {
 public:
  explicit GraphIndex(const Graph& graph);
  // Index of the node producing `value`, or -1 (graph input / initializer / unknown).
  int Producer(const std::string& value) const;
  // How many node inputs plus graph outputs read `value`.
  int UseCount(const std::string& value) const;
  bool IsGraphOutput(const std::string& value) const;
  // The single node reading `value` (and not a graph output), or -1.
  int SoleConsumer(const std::string& value) const;

 private:
  std::unordered_map<std::string, int> producer_;
  std::unordered_map<std::string, std::vector<int>> consumers_;
  std::unordered_map<std::string, int> graph_outputs_;
};

bool IsOp(const Node& node, const char* op_type);  // ONNX domain only
// Activations the fused kernels apply in their epilogue (`activation` attribute of
// itkit.FusedConv / itkit.GroupNorm): Relu, LeakyRelu, Sigmoid, Tanh.
bool IsEpilogueActivation(const Node& node);
// Moves `act` (an epilogue activation) into `fused`'s attributes.
void TakeActivation(Node& fused, const Node& act);
// Initializer by name or nullptr.
const Tensor* Constant(const Graph& graph, const std::string& name);
// Replaces every read of `from` (node inputs) by `to`. Graph outputs are not touched.
void ReplaceUses(Graph& graph, const std::string& from, const std::string& to);
// Removes nodes flagged in `dead` (same size as graph.nodes).
void RemoveNodes(Graph& graph, const std::vector<bool>& dead);
// Drops initializers nobody reads.
void RemoveUnusedInitializers(Graph& graph);
// A fresh value/initializer name based on `base`.
std::string UniqueName(const Graph& graph, const std::string& base);
// The same, also unused by `reserved` (the names of nodes a pass has made but not yet
// put in the graph), to which it is added.
std::string FreshName(const Graph& graph, std::unordered_set<std::string>& reserved, const std::string& base);

}  // namespace itkit::passes
