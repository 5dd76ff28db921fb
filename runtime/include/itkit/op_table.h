// The explicit table of every op the runtime knows: its domain, name and shape rule.
// Adding an op = one row in runtime/op_table.cpp + a shape rule + a CPU kernel +
// an importer entry + a test. No static-initialiser registration anywhere.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "itkit/shape_inference.h"

namespace itkit {

struct OpSchema {
  std::string_view domain;   // "" (ONNX) or kItkitDomain
  std::string_view op_type;
  ShapeFn infer_shape;
};

// nullptr if the runtime does not know the op.
const OpSchema* FindOpSchema(std::string_view domain, std::string_view op_type);
const std::vector<OpSchema>& AllOpSchemas();
// "" and "ai.onnx" are the same domain.
bool IsOnnxDomain(std::string_view domain);

// Runs the op's shape rule, with the node's description on any error.
Status InferNodeShapes(ShapeContext& ctx);

}  // namespace itkit
