// Parsing of ONNX Einsum equations ("bhxd,bhyd->bhxy", "...ii->...i", implicit
// output), shared by the shape rule and the CPU kernel.
#pragma once

#include <string>
#include <vector>

#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit::shape_rules {

struct EinsumPlan {
  // Every label, named ('a'..'z', 'A'..'Z') or an ellipsis dimension (encoded as
  // '0' + its position in the broadcast ellipsis, counted from the left).
  std::vector<char> labels;
  std::vector<int64_t> label_sizes;          // per label
  std::vector<std::vector<char>> operand_labels;  // per operand, one label per dim
  std::vector<char> output_labels;
  Shape output_shape;
};

Result<EinsumPlan> ParseEinsum(const std::string& equation, const std::vector<Shape>& shapes);

// An equation's terms as written, before any shape is known (for graph passes, which
// reason about labels alone): one label list per operand, then the output's; "..."
// and spaces are dropped from the lists (`ellipsis` says whether one appeared).
struct EinsumTerms {
  std::vector<std::vector<char>> operands;
  bool explicit_output = false;
  std::vector<char> output;  // empty for an implicit output
  bool ellipsis = false;
};

Result<EinsumTerms> ParseEinsumTerms(const std::string& equation);

}  // namespace itkit::shape_rules
