// The graph IR: ONNX-shaped nodes over named values, plus initializers and metadata.
// Op semantics are ONNX's (domain "" = ai.onnx); fused ops the passes create live in
// the domain kItkitDomain and are documented in runtime/op_table.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit {

inline constexpr const char* kItkitDomain = "itkit";

struct Attribute {
  enum class Kind : uint8_t { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0.0f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;
};

class Attributes {
 public:
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  const Attribute* Find(const std::string& name) const;
  void Set(const std::string& name, Attribute value) { values_[name] = std::move(value); }
  void SetInt(const std::string& name, int64_t v);
  void SetFloat(const std::string& name, float v);
  void SetString(const std::string& name, std::string v);
  void SetInts(const std::string& name, std::vector<int64_t> v);
  void SetFloats(const std::string& name, std::vector<float> v);
  void Erase(const std::string& name) { values_.erase(name); }

  // Typed getters return the default when absent; a present attribute of the wrong
  // kind is treated as absent by these and reported by the Require* variants.
  int64_t GetInt(const std::string& name, int64_t def) const;
  float GetFloat(const std::string& name, float def) const;
  std::string GetString(const std::string& name, const std::string& def) const;
  std::vector<int64_t> GetInts(const std::string& name, std::vector<int64_t> def = {}) const;
  std::vector<float> GetFloats(const std::string& name, std::vector<float> def = {}) const;
  Result<int64_t> RequireInt(const std::string& name) const;
  Result<std::vector<int64_t>> RequireInts(const std::string& name) const;

  const std::map<std::string, Attribute>& all() const { return values_; }

 private:
  std::map<std::string, Attribute> values_;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;               // "" for the default ONNX domain
  std::vector<std::string> inputs;  // "" marks an omitted optional input
  std::vector<std::string> outputs;
  Attributes attrs;

  bool has_input(size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
  // "node 'conv1' (Conv)" for error messages.
  std::string Describe() const;
};

// One dimension of a declared shape: a fixed size, or a named/anonymous symbol.
struct Dim {
  int64_t value = -1;  // >= 0: static size
  std::string symbol;  // set for symbolic dims ("N", "depth"); empty + value<0 = unknown
  bool is_static() const { return value >= 0; }
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kUndefined;
  bool has_shape = false;
  std::vector<Dim> dims;
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;  // kept in topological order by ValidateGraph/SortTopologically
  std::unordered_map<std::string, Tensor> initializers;
  std::vector<ValueInfo> inputs;   // graph inputs that are not initializers
  std::vector<ValueInfo> outputs;
  std::map<std::string, int64_t> opsets;  // domain → version

  int64_t onnx_opset() const;
  const ValueInfo* FindInput(const std::string& name) const;
};

// Free-form key/value metadata (ONNX metadata_props) plus typed accessors for the
// keys ITKIT uses; see docs/model-metadata.md.
struct ModelMetadata {
  std::map<std::string, std::string> props;
  std::string producer_name;
  std::string producer_version;
  int64_t ir_version = 0;

  std::optional<std::string> Get(const std::string& key) const;
};

struct Model {
  Graph graph;
  ModelMetadata metadata;
  std::string source;  // file path or "<memory>", for error messages
};

// Checks structure: unique value producers, every consumed value defined (graph
// input, initializer or earlier node output), no cycles, outputs produced. Reorders
// nodes topologically when they are valid but out of order.
Status ValidateAndSortGraph(Graph& graph);

}  // namespace itkit
