// The one list of ops the runtime knows. Fused ops created by passes (domain "itkit"):
//   FusedConv      Conv's inputs (X, W, optional B) and attributes, an optional Z of
//                  exactly Y's shape and dtype, plus `activation` in {"", Relu, LeakyRelu,
//                  Sigmoid, Tanh, Gelu} and `alpha` (LeakyRelu slope, default 0.01):
//                  Y = act(Conv(X, W) + B + Z). Z is how a convolution over a Concat is
//                  split into one per part, each adding into the next, without the Concat.
//                  See runtime/passes/fuse_conv_activation.cpp, split_conv_over_concat.cpp,
//                  shape_infer/conv.cpp.
//   GroupNorm      X [N,C,...], scale[C], bias[C], optional residual R; `num_groups`
//                  (divides C), `epsilon` (default 1e-5), optional `activation`/`alpha` as
//                  for FusedConv:
//                  Y = act((X - mean_g) / sqrt(var_g + eps) * scale[c] + bias[c] + R), biased
//                  variance over each group's channels and all spatial positions. R has
//                  exactly X's shape and dtype (no broadcasting): ResEnc's act(Norm(x) + skip).
//                  InstanceNormalization is GroupNorm with num_groups = C. See
//                  runtime/passes/fuse_norm_activation.cpp, fuse_norm_residual.cpp.
//   LayerNormAct   LayerNormalization (inputs, attributes, outputs) + `activation`/`alpha`
//                  applied to Y.
//   FusedElementwise  1-8 inputs of one float dtype, all broadcast (numpy) to the output:
//                  Y = a register program of at most 16 elementwise ops, computed in f32
//                  per output element. Registers 0..n-1 are the inputs; instruction i writes
//                  register n+i; the last one is Y. `program` ints: (opcode, dst, a, b) per
//                  instruction, an operand -1 reads the instruction's first immediate;
//                  `immediates` floats: (imm0, imm1) per instruction; `broadcast_rank`
//                  (optional): Y has at least this rank. Opcodes (itkit/fused_elementwise.h):
//                  unary 0 Relu, 1 LeakyRelu(imm0 alpha), 2 Sigmoid, 3 Tanh, 4 Erf, 5 Exp,
//                  6 Log, 7 Sqrt, 8 Abs, 9 Neg, 10 Reciprocal, 11 Floor, 12 Ceil, 13 Round,
//                  14 Softplus, 15 Softsign, 16 Elu(alpha), 17 Selu(alpha, gamma),
//                  18 HardSigmoid(alpha, beta), 19 HardSwish, 20 Sin, 21 Cos, 22 Clip(min, max);
//                  binary 32 Add, 33 Sub, 34 Mul, 35 Div, 36 Pow, 37 Max, 38 Min, 39 PRelu.
//                  See runtime/passes/fuse_elementwise.cpp.
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
