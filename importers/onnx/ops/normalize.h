// Opset normalisation: rewrites of ONNX nodes whose old forms the runtime's shape
// rules and kernels do not read. Most ops need none: the IR keeps ONNX semantics,
// the rules accept both the attribute and the input form of int lists
// (ShapeContext::IntsFromAttrOrInput) and look at the opset where meaning changed
// (Clip/Pad attributes before 11, Upsample, Resize-10, Softmax before 13).
// What is rewritten here, and into which form:
//   legacy_broadcast.cpp  opset < 7 `broadcast`/`axis` on binary ops, Gemm `broadcast`
//                         → numpy broadcasting (attributes dropped, B reshaped or
//                         unsqueezed when aligned at a non-trailing axis); PRelu-6
//                         per-channel slope [C] → [C,1,...] (numpy form of opset 7)
//   legacy_flags.cpp      opset < 7 `is_test` (BatchNormalization, Dropout), opset < 9
//                         BatchNormalization `spatial` (dropped when inference/1,
//                         else Unsupported)
//   cast.cpp              Cast `to` naming a data type we do not compute with →
//                         Unsupported at import instead of at planning
// Rewritten nodes keep the graph's opset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "itkit/graph.h"

namespace itkit::onnx_import {

// What normalisers may use and change.
struct NormalizeContext {
  Graph& graph;
  int64_t opset;  // the model's ai.onnx opset
  // Declared rank/dtype of values whose type the file states (graph inputs and outputs,
  // value_info, initializers); absent when unknown.
  std::unordered_map<std::string, int> ranks;
  std::unordered_map<std::string, DType> dtypes;
  std::unordered_set<std::string> used_names;  // every value name, for fresh names
  std::vector<Node> new_nodes;  // nodes a normaliser adds; appended, then sorted

  // A value name not used anywhere yet, derived from `base`.
  std::string FreshName(const std::string& base);
  // Adds an initializer under a fresh name derived from `base`; returns the name.
  std::string AddInitializer(const std::string& base, Tensor value);
  int RankOf(const std::string& name) const;       // -1 when unknown
  DType DTypeOf(const std::string& name) const;    // kUndefined when unknown
};

using NormalizeFn = Status (*)(Node& node, NormalizeContext& ctx);

struct OpNormalizer {
  std::string_view op_type;  // ai.onnx op it applies to
  int64_t max_opset;         // applies when the model's opset ≤ this
  NormalizeFn fn;
};

// The explicit table (ops/normalize.cpp).
const std::vector<OpNormalizer>& OnnxOpNormalizers();

// One family each (ops/*.cpp).
Status NormalizeLegacyBroadcast(Node& node, NormalizeContext& ctx);
Status NormalizeGemmBroadcast(Node& node, NormalizeContext& ctx);
Status NormalizeIsTest(Node& node, NormalizeContext& ctx);
Status NormalizePReluSlope(Node& node, NormalizeContext& ctx);
Status NormalizeCast(Node& node, NormalizeContext& ctx);

}  // namespace itkit::onnx_import
