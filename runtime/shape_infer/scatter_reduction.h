// ScatterND's `reduction` attribute, read once for its shape rule and its CPU kernel so
// that they accept the same names.
#pragma once

#include <string>

#include "itkit/graph.h"
#include "itkit/status.h"

namespace itkit::shape_rules {

enum class ScatterReduction { kNone, kAdd, kMul, kMax, kMin };

inline Result<ScatterReduction> ScatterReductionOf(const Node& node) {
  const std::string name = node.attrs.GetString("reduction", "none");
  if (name == "none") return ScatterReduction::kNone;
  if (name == "add") return ScatterReduction::kAdd;
  if (name == "mul") return ScatterReduction::kMul;
  if (name == "max") return ScatterReduction::kMax;
  if (name == "min") return ScatterReduction::kMin;
  return Unsupported(node.Describe(), ": reduction '", name, "' is not supported");
}

}  // namespace itkit::shape_rules
