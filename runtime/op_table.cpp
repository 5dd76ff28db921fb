// The one list of ops the runtime knows. Fused ops created by passes (domain "itkit"):
//   FusedConv      Conv's inputs (X, W, optional B; no residual input) and attributes,
//                  plus `activation` in {"", Relu, LeakyRelu, Sigmoid, Tanh, Gelu} and
//                  `alpha` (LeakyRelu slope, default 0.01):  Y = act(Conv(X, W) + B).
//                  See runtime/passes/fuse_conv_activation.cpp, shape_infer/conv.cpp.
//   GroupNorm      X [N,C,...], scale[C], bias[C]; `num_groups` (divides C), `epsilon`
//                  (default 1e-5), optional `activation`/`alpha` as for FusedConv:
//                  Y = act((X - mean_g) / sqrt(var_g + eps) * scale[c] + bias[c]), biased
//                  variance over each group's channels and all spatial positions.
//                  InstanceNormalization is GroupNorm with num_groups = C.
//   LayerNormAct   LayerNormalization (inputs, attributes, outputs) + `activation`/`alpha`
//                  applied to Y.
#include "itkit/op_table.h"

#include "shape_infer/shape_rules.h"

namespace itkit {

const std::vector<OpSchema>& AllOpSchemas() {
  static const std::vector<OpSchema> table = [] {
    std::vector<OpSchema> t;
    shape_rules::AppendElementwise(t);
    shape_rules::AppendTensorOps(t);
    shape_rules::AppendReduce(t);
    shape_rules::AppendConv(t);
    shape_rules::AppendPool(t);
    shape_rules::AppendNorm(t);
    shape_rules::AppendResize(t);
    shape_rules::AppendMatMul(t);
    shape_rules::AppendEinsum(t);
    return t;
  }();
  return table;
}

bool IsOnnxDomain(std::string_view domain) { return domain.empty() || domain == "ai.onnx"; }

const OpSchema* FindOpSchema(std::string_view domain, std::string_view op_type) {
  const bool onnx = IsOnnxDomain(domain);
  for (const OpSchema& s : AllOpSchemas()) {
    if (s.op_type != op_type) continue;
    if (onnx ? IsOnnxDomain(s.domain) : s.domain == domain) return &s;
  }
  return nullptr;
}

Status InferNodeShapes(ShapeContext& ctx) {
  const Node& node = ctx.node();
  const OpSchema* schema = FindOpSchema(node.domain, node.op_type);
  if (!schema) return Unsupported(node.Describe(), ": operator is not supported");
  Status s = schema->infer_shape(ctx);
  if (!s.ok() && s.message().rfind(node.Describe(), 0) != 0) return s.WithContext(node.Describe());
  return s;
}

}  // namespace itkit
