// Channels-last storage: shapes, perms, which ops have a channels-last form, host
// conversions. See itkit/channels_last.h.
#include "itkit/channels_last.h"

#include <cstring>
#include <string_view>

#include "itkit/op_table.h"
#include "itkit/shape_inference.h"

namespace itkit {
namespace {

// Ops whose result at an element depends only on the same element of each input (and
// on scalars): layout-blind, so they run on the stored data unchanged.
bool IsElementwise(const Node& node) {
  static constexpr std::string_view kOnnx[] = {
      "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Softsign", "Clip",
      "Abs",  "Neg",       "Elu",     "Selu",        "Softplus",  "Exp",  "Log", "Sqrt", "Reciprocal", "Cast",
      "Identity", "Dropout", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
  if (node.domain == kItkitDomain) return node.op_type == "FusedElementwise";
  if (!IsOnnxDomain(node.domain)) return false;
  for (std::string_view op : kOnnx)
    if (node.op_type == op) return true;
  return false;
}

bool IsConvolution(const Node& node) {
  if (node.domain == kItkitDomain) return node.op_type == "FusedConv";
  return IsOnnxDomain(node.domain) && (node.op_type == "Conv" || node.op_type == "ConvTranspose");
}

bool IsChannelNorm(const Node& node) {
  if (node.domain == kItkitDomain) return node.op_type == "GroupNorm";
  return IsOnnxDomain(node.domain) && node.op_type == "InstanceNormalization";
}

bool Present(const ValueDesc& d) { return d.dtype != DType::kUndefined; }

}  // namespace

ChannelsLastKind ChannelsLastKindOf(const Node& node) {
  if (IsConvolution(node)) return ChannelsLastKind::kConvolution;
  if (IsChannelNorm(node)) return ChannelsLastKind::kChannelNorm;
  if (IsElementwise(node)) return ChannelsLastKind::kElementwise;
  if (IsOnnxDomain(node.domain) && node.op_type == "Concat") return ChannelsLastKind::kConcat;
  return ChannelsLastKind::kNone;
}

Shape ChannelsLastStoredShape(const Shape& logical) {
  if (logical.size() < 3) return logical;
  Shape stored = {logical[0]};
  stored.insert(stored.end(), logical.begin() + 2, logical.end());
  stored.push_back(logical[1]);
  return stored;
}

std::vector<int64_t> LogicalStrides(const Shape& logical, bool channels_last) {
  if (!channels_last || logical.size() < 3) return ContiguousStrides(logical);
  // Stored axis 0 is N, 1..k the spatial axes, k+1 the channels.
  const std::vector<int64_t> stored = ContiguousStrides(ChannelsLastStoredShape(logical));
  std::vector<int64_t> strides = {stored[0], stored.back()};
  strides.insert(strides.end(), stored.begin() + 1, stored.end() - 1);
  return strides;
}

std::vector<int64_t> ToChannelsLastPerm(int rank) {
  std::vector<int64_t> perm = {0};
  for (int i = 2; i < rank; ++i) perm.push_back(i);
  perm.push_back(1);
  return perm;
}

std::vector<int64_t> FromChannelsLastPerm(int rank) {
  std::vector<int64_t> perm = {0, rank - 1};
  for (int i = 1; i < rank - 1; ++i) perm.push_back(i);
  return perm;
}

bool ChannelsLastCandidate(const NodeSignature& sig, ChannelsLastForm* form) {
  const Node& node = *sig.node;
  if (sig.inputs.empty() || sig.outputs.empty()) return false;
  ChannelsLastForm f;
  f.inputs.assign(sig.inputs.size(), false);
  f.outputs.assign(sig.outputs.size(), false);
  const ChannelsLastKind kind = ChannelsLastKindOf(node);
  if (kind == ChannelsLastKind::kConvolution || kind == ChannelsLastKind::kChannelNorm) {
    if (!HasChannelsLastForm(sig.inputs[0].shape) || sig.outputs[0].shape.size() != sig.inputs[0].shape.size())
      return false;
    if (sig.outputs.size() != 1) return false;
    f.inputs[0] = true;
    // itkit.GroupNorm's residual (input 3) has X's shape and layout; itkit.FusedConv's
    // Z (input 3) has Y's.
    if (sig.inputs.size() > 3 && Present(sig.inputs[3])) {
      if (sig.inputs[3].shape != (IsChannelNorm(node) ? sig.inputs[0].shape : sig.outputs[0].shape)) return false;
      f.inputs[3] = true;
    }
    f.outputs[0] = true;
    f.converts_inputs = kind == ChannelsLastKind::kConvolution;
  } else if (kind == ChannelsLastKind::kElementwise) {
    const Shape& out = sig.outputs[0].shape;
    if (!HasChannelsLastForm(out)) return false;
    for (const ValueDesc& o : sig.outputs)
      if (Present(o) && o.shape != out) return false;
    bool any = false;
    for (size_t i = 0; i < sig.inputs.size(); ++i) {
      const ValueDesc& d = sig.inputs[i];
      if (!Present(d)) continue;
      if (d.shape == out) {
        f.inputs[i] = any = true;
      } else if (ElementCount(d.shape) != 1) {
        return false;  // a broadcast along some axes: depends on the layout
      }
    }
    if (!any) return false;
    for (size_t o = 0; o < sig.outputs.size(); ++o) f.outputs[o] = Present(sig.outputs[o]);
  } else if (kind == ChannelsLastKind::kConcat) {
    const Shape& out = sig.outputs[0].shape;
    if (!HasChannelsLastForm(out)) return false;
    auto axis = NormalizeAxis(node.attrs.GetInt("axis", 0), static_cast<int>(out.size()), node);
    if (!axis.ok() || *axis != 1) return false;
    for (size_t i = 0; i < sig.inputs.size(); ++i) {
      if (!Present(sig.inputs[i]) || sig.inputs[i].shape.size() != out.size()) return false;
      f.inputs[i] = true;
    }
    f.outputs[0] = true;
  } else {
    return false;
  }
  if (form) *form = std::move(f);
  return true;
}

NodeSignature StoredSignature(const NodeSignature& sig) {
  NodeSignature stored = sig;
  for (auto* list : {&stored.inputs, &stored.outputs})
    for (ValueDesc& d : *list) {
      if (!d.channels_last) continue;
      d.shape = ChannelsLastStoredShape(d.shape);
      d.channels_last = false;
      d.constant = nullptr;  // constants are never channels-last; be safe
    }
  return stored;
}

bool HasChannelsLast(const NodeSignature& sig) {
  for (const auto* list : {&sig.inputs, &sig.outputs})
    for (const ValueDesc& d : *list)
      if (d.channels_last) return true;
  return false;
}

namespace {

// [N][C][S] <-> [N][S][C], element size `eb`.
void Permute(const uint8_t* src, uint8_t* dst, const Shape& logical, size_t eb, bool to_channels_last) {
  if (logical.size() < 3) {
    std::memcpy(dst, src, static_cast<size_t>(ElementCount(logical)) * eb);
    return;
  }
  const int64_t N = logical[0], C = logical[1];
  int64_t S = 1;
  for (size_t i = 2; i < logical.size(); ++i) S *= logical[i];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t rm = (n * C + c) * S + s, cl = (n * S + s) * C + c;
        const int64_t from = to_channels_last ? rm : cl, to = to_channels_last ? cl : rm;
        std::memcpy(dst + static_cast<size_t>(to) * eb, src + static_cast<size_t>(from) * eb, eb);
      }
}

}  // namespace

void ToChannelsLast(const void* row_major, void* channels_last, const Shape& logical, size_t element_bytes) {
  Permute(static_cast<const uint8_t*>(row_major), static_cast<uint8_t*>(channels_last), logical, element_bytes, true);
}

void FromChannelsLast(const void* channels_last, void* row_major, const Shape& logical, size_t element_bytes) {
  Permute(static_cast<const uint8_t*>(channels_last), static_cast<uint8_t*>(row_major), logical, element_bytes, false);
}

}  // namespace itkit
