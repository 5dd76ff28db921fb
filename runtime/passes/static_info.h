// What a pass can know about a value before any input shape is given: its dtype, and
// its shape as symbolic dims: strings that are equal only where the sizes provably are
// ("16" static, "$N" a dim the model names, "conv(...)" or "max(...)" (a broadcast)
// an expression of others, "?..." unknown and unique to one value). Graph inputs and initializers are as declared;
// node outputs follow per-op rules (same shape as input 0 for unary ops and norms,
// numpy broadcasting for binary ops, the output-size formula for Conv); any op
// without a rule gives an unknown dtype and no shape, so passes that need a fact
// leave such nodes alone.
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
};

class StaticInfoMap {
 public:
  // One pass over graph.nodes in order (they are topologically sorted when passes run).
  explicit StaticInfoMap(const Graph& graph);
  const StaticInfo& Get(const std::string& value) const;

 private:
  std::unordered_map<std::string, StaticInfo> info_;
  StaticInfo unknown_;
};

// Both shapes known and provably the same (same rank, every dim the same symbol).
bool SameShape(const StaticInfo& a, const StaticInfo& b);

}  // namespace itkit::passes
