#include "passes/graph_edit.h"

#include <unordered_set>

#include "itkit/op_table.h"

namespace itkit::passes {

GraphIndex::GraphIndex(const Graph& graph) {
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const std::string& out : graph.nodes[i].outputs)
      if (!out.empty()) producer_[out] = static_cast<int>(i);
    for (const std::string& in : graph.nodes[i].inputs)
      if (!in.empty()) consumers_[in].push_back(static_cast<int>(i));
  }
  for (const ValueInfo& out : graph.outputs) ++graph_outputs_[out.name];
}

int GraphIndex::Producer(const std::string& value) const {
  auto it = producer_.find(value);
  return it == producer_.end() ? -1 : it->second;
}

int GraphIndex::UseCount(const std::string& value) const {
  int count = 0;
  if (auto it = consumers_.find(value); it != consumers_.end()) count += static_cast<int>(it->second.size());
  if (auto it = graph_outputs_.find(value); it != graph_outputs_.end()) count += it->second;
  return count;
}

bool GraphIndex::IsGraphOutput(const std::string& value) const { return graph_outputs_.count(value) != 0; }

int GraphIndex::SoleConsumer(const std::string& value) const {
  if (IsGraphOutput(value)) return -1;
  auto it = consumers_.find(value);
  if (it == consumers_.end() || it->second.size() != 1) return -1;
  return it->second[0];
}

bool IsEpilogueActivation(const Node& node) {
  return IsOp(node, "Relu") || IsOp(node, "LeakyRelu") || IsOp(node, "Sigmoid") || IsOp(node, "Tanh");
}

void TakeActivation(Node& fused, const Node& act) {
  fused.attrs.SetString("activation", act.op_type);
  if (IsOp(act, "LeakyRelu")) fused.attrs.SetFloat("alpha", act.attrs.GetFloat("alpha", 0.01f));
}

bool IsOp(const Node& node, const char* op_type) { return IsOnnxDomain(node.domain) && node.op_type == op_type; }

const Tensor* Constant(const Graph& graph, const std::string& name) {
  auto it = graph.initializers.find(name);
  return it == graph.initializers.end() ? nullptr : &it->second;
}

void ReplaceUses(Graph& graph, const std::string& from, const std::string& to) {
  for (Node& node : graph.nodes)
    for (std::string& in : node.inputs)
      if (in == from) in = to;
}

void RemoveNodes(Graph& graph, const std::vector<bool>& dead) {
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(graph.nodes[i]));
  graph.nodes = std::move(kept);
}

void RemoveUnusedInitializers(Graph& graph) {
  std::unordered_set<std::string> used;
  for (const Node& node : graph.nodes)
    for (const std::string& in : node.inputs) used.insert(in);
  for (const ValueInfo& out : graph.outputs) used.insert(out.name);
  for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
    it = used.count(it->first) ? std::next(it) : graph.initializers.erase(it);
  }
}

std::string UniqueName(const Graph& graph, const std::string& base) {
  std::unordered_set<std::string> taken;
  for (const auto& [name, t] : graph.initializers) taken.insert(name);
  for (const ValueInfo& v : graph.inputs) taken.insert(v.name);
  for (const Node& n : graph.nodes)
    for (const std::string& o : n.outputs) taken.insert(o);
  if (!taken.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = base + "_" + std::to_string(i);
    if (!taken.count(candidate)) return candidate;
  }
}

std::string FreshName(const Graph& graph, std::unordered_set<std::string>& reserved, const std::string& base) {
  for (int i = 0;; ++i) {
    std::string name = UniqueName(graph, i == 0 ? base : base + "_" + std::to_string(i));
    if (reserved.insert(name).second) return name;
  }
}

}  // namespace itkit::passes
