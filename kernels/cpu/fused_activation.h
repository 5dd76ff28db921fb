// The activations fused ops (itkit.FusedConv, itkit.GroupNorm, itkit.LayerNormAct)
// apply in their epilogue: the `activation` string attribute + `alpha` for LeakyRelu.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "itkit/graph.h"
#include "itkit/status.h"

namespace itkit::cpu {

enum class ActKind : uint8_t { kNone, kRelu, kLeakyRelu, kSigmoid, kTanh, kGelu };

struct Activation {
  ActKind kind = ActKind::kNone;
  float alpha = 0.01f;  // LeakyRelu slope
};

inline Result<Activation> ParseActivation(const Node& node) {
  Activation a;
  const std::string s = node.attrs.GetString("activation", "");
  a.alpha = node.attrs.GetFloat("alpha", 0.01f);
  if (s.empty()) a.kind = ActKind::kNone;
  else if (s == "Relu") a.kind = ActKind::kRelu;
  else if (s == "LeakyRelu") a.kind = ActKind::kLeakyRelu;
  else if (s == "Sigmoid") a.kind = ActKind::kSigmoid;
  else if (s == "Tanh") a.kind = ActKind::kTanh;
  else if (s == "Gelu") a.kind = ActKind::kGelu;
  else return InvalidArgument(node.Describe(), ": unknown fused activation '", s, "'");
  return a;
}

// Scalar form, the definition the vectorised loops are tested against.
inline float ApplyActivation(const Activation& a, float v) {
  switch (a.kind) {
    case ActKind::kNone: return v;
    case ActKind::kRelu: return v < 0.0f ? 0.0f : v;  // NaN stays NaN, as in PyTorch
    case ActKind::kLeakyRelu: return v >= 0.0f ? v : v * a.alpha;
    case ActKind::kSigmoid: return 1.0f / (1.0f + std::exp(-v));
    case ActKind::kTanh: return std::tanh(v);
    case ActKind::kGelu: return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
  }
  return v;
}

// In place over a contiguous range; the two cheap, common cases are written so the
// compiler vectorises them.
inline void ApplyActivation(const Activation& a, float* data, int64_t n) {
  switch (a.kind) {
    case ActKind::kNone: return;
    case ActKind::kRelu:
      for (int64_t i = 0; i < n; ++i) data[i] = data[i] < 0.0f ? 0.0f : data[i];
      return;
    case ActKind::kLeakyRelu: {
      const float alpha = a.alpha;
      for (int64_t i = 0; i < n; ++i) data[i] = data[i] >= 0.0f ? data[i] : data[i] * alpha;
      return;
    }
    default:
      for (int64_t i = 0; i < n; ++i) data[i] = ApplyActivation(a, data[i]);
  }
}

}  // namespace itkit::cpu
