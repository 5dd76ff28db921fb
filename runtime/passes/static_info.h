// What a pass can know about a value before any input shape is given: its dtype, and
// its shape as symbolic dims: strings that are equal only where the sizes provably are
// ("16" static, "$N" a dim the model names, "conv(...)" or "max(...)" (a broadcast)
// an expression of others, "?..." unknown and unique to one value). Graph inputs and initializers are as declared;
// node outputs follow per-op rules (same shape as input 0 for unary ops and norms,
// numpy broadcasting for binary ops, the output-size formula for Conv, permuted dims
// for Transpose, Gather with constant-shaped indices, MatMul, Einsum by its labels); any op
// without a rule gives an unknown dtype and no shape, so passes that need a fact
// leave such nodes alone.
//
// A value whose shape is not known still has a shape class: values of one class
// provably have the same shape, though neither rank nor sizes are known (the q, k and v
// that torch's attention gathers from one tensor: Gather(t, 0), Gather(t, 1), ...).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "itkit/graph.h"

namespace itkit::passes {

struct StaticInfo {
  DType dtype = DType::kUndefined;
  bool has_shape = false;
  std::vector<std::string> dims;
  int shape_class = -1;  // without a shape: equal classes, equal shapes; -1: no facts
};

class StaticInfoMap {
 public:
  // One pass over graph.nodes in order (they are topologically sorted when passes run).
  explicit StaticInfoMap(const Graph& graph);
  const StaticInfo& Get(const std::string& value) const;
  // `value`'s dims on the premise that it has rank `rank` (an Einsum term says so): its
  // known dims, or symbols of its shape class ("~class#axis"). False if its known
  // rank differs or nothing is known.
  bool DimsIfRank(const std::string& value, size_t rank, std::vector<std::string>* dims) const;

 private:
  // The class of values of an op-made shape: `key` names the op and its input's class.
  int DerivedClass(const std::string& key);

  std::unordered_map<std::string, StaticInfo> info_;
  std::unordered_map<std::string, int> derived_classes_;
  int next_class_ = 0;
  StaticInfo unknown_;
};

// Both shapes known and provably the same (same rank, every dim the same symbol).
bool SameShape(const StaticInfo& a, const StaticInfo& b);

}  // namespace itkit::passes
