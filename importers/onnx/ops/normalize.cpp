#include "ops/normalize.h"

namespace itkit::onnx_import {

const std::vector<OpNormalizer>& OnnxOpNormalizers() {
  static const std::vector<OpNormalizer> table = {
      // Opset < 7 binary ops with the legacy `broadcast` attribute.
      {"Add", 6, NormalizeLegacyBroadcast},
      {"Sub", 6, NormalizeLegacyBroadcast},
      {"Mul", 6, NormalizeLegacyBroadcast},
      {"Div", 6, NormalizeLegacyBroadcast},
      {"Pow", 6, NormalizeLegacyBroadcast},
      {"And", 6, NormalizeLegacyBroadcast},
      {"Or", 6, NormalizeLegacyBroadcast},
      {"Xor", 6, NormalizeLegacyBroadcast},
      {"Equal", 6, NormalizeLegacyBroadcast},
      {"Greater", 6, NormalizeLegacyBroadcast},
      {"Less", 6, NormalizeLegacyBroadcast},
      {"Gemm", 6, NormalizeGemmBroadcast},
      {"BatchNormalization", 8, NormalizeIsTest},
      {"Dropout", 6, NormalizeIsTest},
      {"PRelu", 6, NormalizePReluSlope},
      {"Cast", 1000, NormalizeCast},
  };
  return table;
}

std::string NormalizeContext::FreshName(const std::string& base) {
  std::string name = base;
  for (int i = 1; used_names.count(name); ++i) name = base + "_" + std::to_string(i);
  used_names.insert(name);
  return name;
}

std::string NormalizeContext::AddInitializer(const std::string& base, Tensor value) {
  std::string name = FreshName(base);
  ranks[name] = value.rank();
  dtypes[name] = value.dtype();
  graph.initializers[name] = std::move(value);
  return name;
}

int NormalizeContext::RankOf(const std::string& name) const {
  auto it = ranks.find(name);
  return it == ranks.end() ? -1 : it->second;
}

DType NormalizeContext::DTypeOf(const std::string& name) const {
  auto it = dtypes.find(name);
  return it == dtypes.end() ? DType::kUndefined : it->second;
}

}  // namespace itkit::onnx_import
