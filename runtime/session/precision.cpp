// Which ops may keep their f32 values in f16 storage on a backend that asks for it
// (Backend::prefers_half_storage). Like PyTorch's autocast lists, but about storage,
// not math: every kernel still computes in f32. An op is on the list when its inputs
// and outputs stay well inside f16's range (±65504) and relative precision (2^-11)
// in segmentation networks: convolutions, normalisations (they renormalise), bounded
// activations, data movement, pooling, resizing, softmax. Off the list, and kept in
// f32: ops whose results can grow past f16's range or lose it (Exp, Pow, Reciprocal,
// reductions that sum whole volumes, Log of small values, MatMul over long rows).
#include <string_view>

#include "itkit/fused_elementwise.h"
#include "itkit/op_table.h"
#include "session/plan.h"

namespace itkit {

// A fused elementwise program computes in f32 in registers; only its inputs and
// output are stored. The output stays in f16's range unless the program grows
// values: Exp, Log, Reciprocal, Pow, or a division by a computed value.
bool FusedProgramStoresHalfSafely(const Node& node) {
  const std::vector<int64_t> program = node.attrs.GetInts("program");
  if (program.empty() || program.size() % 4 != 0) return false;
  for (size_t i = 0; i < program.size(); i += 4) {
    switch (static_cast<fused::OpCode>(program[i])) {
      case fused::OpCode::kExp:
      case fused::OpCode::kLog:
      case fused::OpCode::kReciprocal:
      case fused::OpCode::kPow:
        return false;
      case fused::OpCode::kDiv:
        if (program[i + 3] != fused::kImmediate) return false;  // x / 1.414 (GELU) is fine
        break;
      default:
        break;
    }
  }
  return true;
}

bool StoresHalfSafely(const Node& node) {
  static constexpr std::string_view kOnnx[] = {
      // convolutions and their epilogues
      "Conv", "ConvTranspose",
      // normalisations: f32 statistics, normalised outputs
      "InstanceNormalization", "BatchNormalization", "LayerNormalization",
      // bounded or sign-only activations
      "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Softsign",
      "Clip", "Abs", "Neg", "Elu", "Selu", "Softplus",
      // residual and skip arithmetic on activations
      "Add", "Sub", "Mul", "Max", "Min",
      // data movement
      "Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Concat",
      "Split", "Expand", "Pad", "Tile", "Gather",
      // resampling and pooling of activations
      "Resize", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
      // class scores: softmax in f32 with f16 inputs/outputs; argmax reads f16
      "Softmax", "ArgMax"};
  static constexpr std::string_view kItkit[] = {"FusedConv", "GroupNorm", "LayerNormAct"};
  if (IsOnnxDomain(node.domain)) {
    for (std::string_view op : kOnnx)
      if (node.op_type == op) return true;
    return false;
  }
  if (node.domain != kItkitDomain) return false;
  if (node.op_type == "FusedElementwise") return FusedProgramStoresHalfSafely(node);
  for (std::string_view op : kItkit)
    if (node.op_type == op) return true;
  return false;
}

bool ConvertsInputsToHalf(const Node& node) {
  // Tensor-core ops compute on f16 operands in FP16 mode anyway; anything else would
  // only lose precision (an argmax of an f32 input flips on near ties).
  static constexpr std::string_view kOnnx[] = {"Conv", "ConvTranspose", "MatMul", "Gemm"};
  if (node.domain == kItkitDomain) return node.op_type == "FusedConv";
  if (!IsOnnxDomain(node.domain)) return false;
  for (std::string_view op : kOnnx)
    if (node.op_type == op) return true;
  return false;
}

bool StoresInputAsHalf(const Node& node, size_t input) {
  // Resize's roi and scales are coordinates, not data: f16 would move samples.
  if (IsOnnxDomain(node.domain) && node.op_type == "Resize") return input == 0;
  return true;
}

}  // namespace itkit
