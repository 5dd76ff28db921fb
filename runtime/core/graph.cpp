#include "itkit/graph.h"

#include <unordered_map>
#include <unordered_set>

namespace itkit {

const Attribute* Attributes::Find(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

void Attributes::SetInt(const std::string& name, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  Set(name, std::move(a));
}
void Attributes::SetFloat(const std::string& name, float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  Set(name, std::move(a));
}
void Attributes::SetString(const std::string& name, std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  Set(name, std::move(a));
}
void Attributes::SetInts(const std::string& name, std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  Set(name, std::move(a));
}
void Attributes::SetFloats(const std::string& name, std::vector<float> v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloats;
  a.floats = std::move(v);
  Set(name, std::move(a));
}

int64_t Attributes::GetInt(const std::string& name, int64_t def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kInt ? a->i : def;
}
float Attributes::GetFloat(const std::string& name, float def) const {
  const Attribute* a = Find(name);
  if (!a) return def;
  if (a->kind == Attribute::Kind::kFloat) return a->f;
  if (a->kind == Attribute::Kind::kInt) return static_cast<float>(a->i);
  return def;
}
std::string Attributes::GetString(const std::string& name, const std::string& def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kString ? a->s : def;
}
std::vector<int64_t> Attributes::GetInts(const std::string& name, std::vector<int64_t> def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kInts ? a->ints : def;
}
std::vector<float> Attributes::GetFloats(const std::string& name, std::vector<float> def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kFloats ? a->floats : def;
}
Result<int64_t> Attributes::RequireInt(const std::string& name) const {
  const Attribute* a = Find(name);
  if (!a) return InvalidArgument("missing required attribute '", name, "'");
  if (a->kind != Attribute::Kind::kInt) return InvalidArgument("attribute '", name, "' is not an int");
  return a->i;
}
Result<std::vector<int64_t>> Attributes::RequireInts(const std::string& name) const {
  const Attribute* a = Find(name);
  if (!a) return InvalidArgument("missing required attribute '", name, "'");
  if (a->kind != Attribute::Kind::kInts) return InvalidArgument("attribute '", name, "' is not an int list");
  return a->ints;
}

std::string Node::Describe() const {
  std::string op = domain.empty() || domain == "ai.onnx" ? op_type : domain + "." + op_type;
  std::string label = !name.empty() ? name : (outputs.empty() ? std::string("?") : "-> " + outputs[0]);
  return "node '" + label + "' (" + op + ")";
}

int64_t Graph::onnx_opset() const {
  for (const char* domain : {"", "ai.onnx"}) {
    auto it = opsets.find(domain);
    if (it != opsets.end()) return it->second;
  }
  return 0;
}

const ValueInfo* Graph::FindInput(const std::string& name) const {
  for (const ValueInfo& v : inputs)
    if (v.name == name) return &v;
  return nullptr;
}

std::optional<std::string> ModelMetadata::Get(const std::string& key) const {
  auto it = props.find(key);
  if (it == props.end()) return std::nullopt;
  return it->second;
}

Status ValidateAndSortGraph(Graph& graph) {
  // Who produces each value.
  std::unordered_map<std::string, size_t> producer;
  std::unordered_set<std::string> sources;
  for (const auto& [name, tensor] : graph.initializers) sources.insert(name);
  for (const ValueInfo& in : graph.inputs) {
    if (in.name.empty()) return InvalidArgument("graph input with an empty name");
    if (!sources.insert(in.name).second && !graph.initializers.count(in.name))
      return InvalidArgument("graph input '", in.name, "' is declared twice");
  }
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    bool has_output = false;
    for (const std::string& out : graph.nodes[i].outputs) has_output = has_output || !out.empty();
    if (!has_output) return InvalidArgument(graph.nodes[i].Describe(), ": node has no outputs");
    for (const std::string& out : graph.nodes[i].outputs) {
      if (out.empty()) continue;
      if (sources.count(out))
        return InvalidArgument(graph.nodes[i].Describe(), ": output '", out,
                               "' overwrites a graph input or initializer");
      if (!producer.emplace(out, i).second)
        return InvalidArgument(graph.nodes[i].Describe(), ": output '", out,
                               "' is also produced by ", graph.nodes[producer[out]].Describe());
    }
  }
  // Kahn's algorithm, stable with respect to the original order.
  const size_t n = graph.nodes.size();
  std::vector<size_t> missing_deps(n, 0);
  std::vector<std::vector<size_t>> consumers(n);
  for (size_t i = 0; i < n; ++i) {
    for (const std::string& in : graph.nodes[i].inputs) {
      if (in.empty() || sources.count(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end())
        return InvalidArgument(graph.nodes[i].Describe(), ": input '", in,
                               "' is not a graph input, an initializer or any node's output");
      ++missing_deps[i];
      consumers[it->second].push_back(i);
    }
  }
  std::vector<size_t> order;
  order.reserve(n);
  std::vector<size_t> ready;
  for (size_t i = n; i-- > 0;)
    if (missing_deps[i] == 0) ready.push_back(i);
  // `ready` is used as a stack holding the smallest index on top.
  while (!ready.empty()) {
    size_t i = ready.back();
    ready.pop_back();
    order.push_back(i);
    std::vector<size_t> newly;
    for (size_t c : consumers[i])
      if (--missing_deps[c] == 0) newly.push_back(c);
    for (size_t c : newly) {
      auto pos = ready.begin();
      while (pos != ready.end() && *pos > c) ++pos;
      ready.insert(pos, c);
    }
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i)
      if (missing_deps[i] != 0)
        return InvalidArgument("the graph has a cycle through ", graph.nodes[i].Describe());
  }
  bool sorted = true;
  for (size_t i = 0; i < n; ++i) sorted = sorted && order[i] == i;
  if (!sorted) {
    std::vector<Node> nodes;
    nodes.reserve(n);
    for (size_t i : order) nodes.push_back(std::move(graph.nodes[i]));
    graph.nodes = std::move(nodes);
  }
  for (const ValueInfo& out : graph.outputs) {
    if (!sources.count(out.name) && !producer.count(out.name))
      return InvalidArgument("graph output '", out.name, "' is never produced");
  }
  return Status::Ok();
}

}  // namespace itkit
