#include "passes/static_info.h"

#include <algorithm>
#include <cstddef>
#include <string_view>

#include "itkit/op_table.h"
#include "shape_infer/einsum_equation.h"
#include "shape_infer/window_geometry.h"

namespace itkit::passes {
namespace {

bool OneOf(std::string_view op, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), op) != list.end();
}

// Output 0 has input 0's dtype and shape.
bool KeepsShape(const Node& n) {
  if (!IsOnnxDomain(n.domain)) return n.domain == kItkitDomain && OneOf(n.op_type, {"GroupNorm", "LayerNormAct"});
  return OneOf(n.op_type, {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh", "Erf", "Softplus", "Softsign",
                           "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Tan", "Asin",
                           "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Elu", "Selu",
                           "ThresholdedRelu", "Celu", "HardSwish", "Abs", "Neg", "Sign", "Shrink", "Identity",
                           "Clip", "Dropout", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
                           "Softmax", "LogSoftmax"});
}

// Output 0 has input 0's dtype; its shape is numpy's broadcast of the inputs.
bool Broadcasts(const Node& n) {
  if (!IsOnnxDomain(n.domain)) return n.domain == kItkitDomain && n.op_type == "FusedElementwise";
  return OneOf(n.op_type, {"Add", "Sub", "Mul", "Div", "Mod", "Pow", "PRelu", "Max", "Min", "Sum", "Mean"});
}

// Output 0 has input 0's dtype; no shape rule here.
bool KeepsDType(const Node& n) {
  if (!IsOnnxDomain(n.domain)) return n.domain == kItkitDomain;  // every fused op keeps X's dtype
  return OneOf(n.op_type, {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
                           "Expand", "Tile", "Pad", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
                           "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "MaxPool",
                           "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize", "Upsample", "Gemm",
                           "ConvTranspose", "Conv", "Range", "CumSum"});
}

std::string Unknown(const std::string& value, size_t axis) { return "?" + value + "#" + std::to_string(axis); }

bool IsNumber(const std::string& d) {
  return !d.empty() && d.size() < 19 && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> BroadcastDims(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<std::string> dims(rank);
  for (size_t i = 0; i < rank; ++i) {
    const std::string* da = i + a.size() >= rank ? &a[i + a.size() - rank] : nullptr;
    const std::string* db = i + b.size() >= rank ? &b[i + b.size() - rank] : nullptr;
    if (!da) dims[i] = *db;
    else if (!db) dims[i] = *da;
    else if (*da == *db || *db == "1") dims[i] = *da;
    else if (*da == "1") dims[i] = *db;
    // Equal at run time, or one of them 1: the result is their maximum either way.
    else dims[i] = "max(" + std::min(*da, *db) + "," + std::max(*da, *db) + ")";
  }
  return dims;
}

// Conv/FusedConv output dims from X's symbolic dims and a constant W.
bool ConvDims(const Node& n, const StaticInfo& x, const Tensor* w, std::vector<std::string>* out) {
  if (!x.has_shape || !w || x.dims.size() < 3 || static_cast<size_t>(w->rank()) != x.dims.size()) return false;
  const size_t nd = x.dims.size() - 2;
  const std::string auto_pad = n.attrs.GetString("auto_pad", "NOTSET");
  const std::vector<int64_t> strides = n.attrs.GetInts("strides", std::vector<int64_t>(nd, 1));
  const std::vector<int64_t> dil = n.attrs.GetInts("dilations", std::vector<int64_t>(nd, 1));
  const std::vector<int64_t> pads = n.attrs.GetInts("pads", std::vector<int64_t>(2 * nd, 0));
  if (strides.size() != nd || dil.size() != nd || pads.size() != 2 * nd) return false;
  out->assign({x.dims[0], std::to_string(w->dim(0))});
  for (size_t i = 0; i < nd; ++i) {
    const int64_t k = w->dim(static_cast<int>(i + 2)), s = strides[i], d = dil[i];
    const int64_t pb = auto_pad == "VALID" ? 0 : pads[i], pe = auto_pad == "VALID" ? 0 : pads[i + nd];
    const std::string& in = x.dims[i + 2];
    if (s <= 0 || d <= 0 || k <= 0) return false;
    const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
    if (!same && auto_pad != "NOTSET" && auto_pad != "VALID") return false;
    if (IsNumber(in)) {
      const int64_t v = std::stoll(in);
      const int64_t o = same ? (v + s - 1) / s : (v + pb + pe - d * (k - 1) - 1) / s + 1;
      if (o < 0) return false;
      out->push_back(std::to_string(o));
    } else if (s == 1 && (same || pb + pe == d * (k - 1))) {
      out->push_back(in);  // "same" convolution: the size is kept
    } else {
      out->push_back(same ? "ceil(" + in + "/" + std::to_string(s) + ")"
                          : "conv(" + in + "," + std::to_string(k) + "," + std::to_string(s) + "," +
                                std::to_string(d) + "," + std::to_string(pb) + "," + std::to_string(pe) + ")");
    }
  }
  return true;
}

// ConvTranspose output dims from X's symbolic dims and a constant W ([C_in, C_out /
// group, k...]). Numeric axes come from the shape rule itself (pads, output_padding,
// output_shape, auto_pad); a symbolic axis becomes an expression of every attribute
// that decides it, so two upsamplings of the same value compare equal.
bool ConvTransposeDims(const Node& n, const StaticInfo& x, const Tensor* w, std::vector<std::string>* out) {
  if (!x.has_shape || !w || x.dims.size() < 3 || static_cast<size_t>(w->rank()) != x.dims.size()) return false;
  const size_t nd = x.dims.size() - 2;
  Shape numeric = {1, w->dim(0)};
  for (size_t i = 0; i < nd; ++i) numeric.push_back(IsNumber(x.dims[i + 2]) ? std::stoll(x.dims[i + 2]) : 1);
  const std::vector<int64_t> kernel(w->shape().begin() + 2, w->shape().end());
  auto g = shape_rules::ComputeWindowGeometry(n, shape_rules::WindowOp::kConvTranspose, numeric, kernel);
  if (!g.ok()) return false;
  out->assign({x.dims[0], std::to_string(w->dim(1) * n.attrs.GetInt("group", 1))});
  const bool explicit_shape = !n.attrs.GetInts("output_shape").empty();
  const std::vector<int64_t> pads = n.attrs.GetInts("pads", std::vector<int64_t>(2 * nd, 0));
  const std::vector<int64_t> opad = n.attrs.GetInts("output_padding", std::vector<int64_t>(nd, 0));
  for (size_t i = 0; i < nd; ++i) {
    const std::string& in = x.dims[i + 2];
    if (IsNumber(in) || explicit_shape) {
      out->push_back(std::to_string(g->out[i]));
      continue;
    }
    out->push_back("convT(" + in + "," + n.attrs.GetString("auto_pad", "NOTSET") + "," + std::to_string(g->kernel[i]) +
                   "," + std::to_string(g->strides[i]) + "," + std::to_string(g->dilations[i]) + "," +
                   std::to_string(pads[i]) + "," + std::to_string(pads[i + nd]) + "," + std::to_string(opad[i]) + ")");
  }
  return true;
}

// MaxPool/AveragePool output 0: N and C kept, spatial dims an expression of the window.
bool PoolDims(const Node& n, const StaticInfo& x, std::vector<std::string>* out) {
  const std::vector<int64_t> k = n.attrs.GetInts("kernel_shape");
  if (!x.has_shape || x.dims.size() < 3 || k.size() != x.dims.size() - 2) return false;
  const size_t nd = k.size();
  const std::vector<int64_t> strides = n.attrs.GetInts("strides", std::vector<int64_t>(nd, 1));
  const std::vector<int64_t> dil = n.attrs.GetInts("dilations", std::vector<int64_t>(nd, 1));
  const std::vector<int64_t> pads = n.attrs.GetInts("pads", std::vector<int64_t>(2 * nd, 0));
  if (strides.size() != nd || dil.size() != nd || pads.size() != 2 * nd) return false;
  const std::string tag = n.op_type + "," + n.attrs.GetString("auto_pad", "NOTSET") + "," +
                          std::to_string(n.attrs.GetInt("ceil_mode", 0));
  out->assign({x.dims[0], x.dims[1]});
  for (size_t i = 0; i < nd; ++i)
    out->push_back("pool(" + x.dims[i + 2] + "," + tag + "," + std::to_string(k[i]) + "," + std::to_string(strides[i]) +
                   "," + std::to_string(dil[i]) + "," + std::to_string(pads[i]) + "," +
                   std::to_string(pads[i + nd]) + ")");
  return true;
}

// Pad with constant pads: each dim grows by its two pads.
bool PadDims(const Graph& graph, const Node& n, const StaticInfo& x, std::vector<std::string>* out) {
  if (!x.has_shape) return false;
  std::vector<int64_t> pads;
  if (graph.onnx_opset() < 11) {
    pads = n.attrs.GetInts("pads");
  } else {
    auto t = n.inputs.size() > 1 ? graph.initializers.find(n.inputs[1]) : graph.initializers.end();
    if (t == graph.initializers.end() || n.inputs.size() > 3) return false;  // no `axes` input either
    pads = t->second.ToInt64Vector();
  }
  const size_t rank = x.dims.size();
  if (pads.size() != 2 * rank) return false;
  *out = x.dims;
  for (size_t i = 0; i < rank; ++i)
    if (pads[i] != 0 || pads[i + rank] != 0)
      (*out)[i] = "pad(" + x.dims[i] + "," + std::to_string(pads[i]) + "," + std::to_string(pads[i + rank]) + ")";
  return true;
}

// Transpose's output dims; false if `perm` is not a permutation of the rank.
bool PermuteDims(const std::vector<std::string>& in, std::vector<int64_t> perm, std::vector<std::string>* out) {
  const size_t rank = in.size();
  if (perm.empty())
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));  // the default: reversed
  if (perm.size() != rank) return false;
  std::vector<bool> seen(rank, false);
  out->clear();
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)]) return false;
    seen[static_cast<size_t>(p)] = true;
    out->push_back(in[static_cast<size_t>(p)]);
  }
  return true;
}

std::string JoinInts(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += std::to_string(x) + ",";
  return s;
}

// Einsum with an explicit output and no ellipsis: an output label's dim is that of the
// first operand carrying it (Einsum requires every operand's size of a label to match).
bool EinsumDims(const StaticInfoMap& map, const Node& n, std::vector<std::string>* out) {
  auto terms = shape_rules::ParseEinsumTerms(n.attrs.GetString("equation", ""));
  if (!terms.ok() || !terms->explicit_output || terms->ellipsis || terms->operands.size() != n.inputs.size())
    return false;
  std::vector<std::vector<std::string>> dims(n.inputs.size());
  for (size_t k = 0; k < n.inputs.size(); ++k)
    if (n.inputs[k].empty() || !map.DimsIfRank(n.inputs[k], terms->operands[k].size(), &dims[k])) return false;
  out->clear();
  for (char label : terms->output) {
    bool found = false;
    for (size_t k = 0; k < dims.size() && !found; ++k) {
      const std::vector<char>& term = terms->operands[k];
      const auto at = std::find(term.begin(), term.end(), label);
      if (at == term.end()) continue;
      out->push_back(dims[k][static_cast<size_t>(at - term.begin())]);
      found = true;
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

int StaticInfoMap::DerivedClass(const std::string& key) {
  auto [it, inserted] = derived_classes_.emplace(key, next_class_);
  if (inserted) ++next_class_;
  return it->second;
}

bool StaticInfoMap::DimsIfRank(const std::string& value, size_t rank, std::vector<std::string>* dims) const {
  const StaticInfo& s = Get(value);
  if (s.has_shape) {
    if (s.dims.size() != rank) return false;
    *dims = s.dims;
    return true;
  }
  if (s.shape_class < 0) return false;
  dims->clear();
  for (size_t a = 0; a < rank; ++a) dims->push_back("~" + std::to_string(s.shape_class) + "#" + std::to_string(a));
  return true;
}

StaticInfoMap::StaticInfoMap(const Graph& graph) {
  for (const auto& [name, t] : graph.initializers) {
    StaticInfo& i = info_[name];
    i.dtype = t.dtype();
    i.has_shape = true;
    for (int64_t d : t.shape()) i.dims.push_back(std::to_string(d));
  }
  for (const ValueInfo& v : graph.inputs) {
    if (graph.initializers.count(v.name)) continue;
    StaticInfo& i = info_[v.name];
    i.dtype = v.dtype;
    i.has_shape = v.has_shape;
    if (!v.has_shape) i.shape_class = next_class_++;
    for (size_t a = 0; a < v.dims.size() && v.has_shape; ++a) {
      const Dim& d = v.dims[a];
      i.dims.push_back(d.is_static()        ? std::to_string(d.value)
                       : d.symbol.empty() ? Unknown(v.name, a)
                                          : "$" + d.symbol);
    }
  }
  for (const Node& n : graph.nodes) {
    if (n.outputs.empty() || n.outputs[0].empty()) continue;
    const std::string& out = n.outputs[0];
    const StaticInfo in0 = n.inputs.empty() ? StaticInfo{} : Get(n.inputs[0]);
    StaticInfo r;
    const bool onnx = IsOnnxDomain(n.domain);
    if (KeepsShape(n)) {
      r = in0;
    } else if (Broadcasts(n)) {
      r.dtype = in0.dtype;
      r.has_shape = true;
      for (const std::string& in : n.inputs) {
        const StaticInfo& s = Get(in);
        if (in.empty() || !s.has_shape) {
          r.has_shape = false;
          break;
        }
        r.dims = BroadcastDims(r.dims, s.dims);
      }
      const size_t rank = static_cast<size_t>(std::max<int64_t>(0, n.attrs.GetInt("broadcast_rank", 0)));
      if (n.domain == kItkitDomain && r.dims.size() < rank) r.dims.insert(r.dims.begin(), rank - r.dims.size(), "1");
      if (!r.has_shape) r.dims.clear();
      // One operand of unknown shape, the others scalars (attention's score * scale):
      // the scalars leave its shape as it is.
      int unknown_class = -1, unknown_count = 0;
      for (const std::string& in : n.inputs) {
        const StaticInfo& s = Get(in);
        if (in.empty() || (s.has_shape && s.dims.empty())) continue;
        ++unknown_count;
        unknown_class = s.has_shape ? -1 : s.shape_class;
      }
      if (!r.has_shape && rank == 0 && unknown_count == 1) r.shape_class = unknown_class;
    } else if ((onnx && n.op_type == "Conv") || (n.domain == kItkitDomain && n.op_type == "FusedConv")) {
      r.dtype = in0.dtype;
      auto w = n.inputs.size() > 1 ? graph.initializers.find(n.inputs[1]) : graph.initializers.end();
      r.has_shape = ConvDims(n, in0, w == graph.initializers.end() ? nullptr : &w->second, &r.dims);
      if (!r.has_shape) r.dims.clear();
    } else if (onnx && n.op_type == "ConvTranspose") {
      r.dtype = in0.dtype;
      auto w = n.inputs.size() > 1 ? graph.initializers.find(n.inputs[1]) : graph.initializers.end();
      r.has_shape = ConvTransposeDims(n, in0, w == graph.initializers.end() ? nullptr : &w->second, &r.dims);
      if (!r.has_shape) r.dims.clear();
    } else if (onnx && (n.op_type == "MaxPool" || n.op_type == "AveragePool")) {
      r.dtype = in0.dtype;
      r.has_shape = PoolDims(n, in0, &r.dims);
      if (!r.has_shape) r.dims.clear();
    } else if (onnx && n.op_type == "Pad") {
      r.dtype = in0.dtype;
      r.has_shape = PadDims(graph, n, in0, &r.dims);
      if (!r.has_shape) r.dims.clear();
    } else if (onnx && n.op_type == "Transpose") {
      r.dtype = in0.dtype;
      const std::vector<int64_t> perm = n.attrs.GetInts("perm");
      if (in0.has_shape)
        r.has_shape = PermuteDims(in0.dims, perm, &r.dims);
      else if (in0.shape_class >= 0)
        r.shape_class = DerivedClass("transpose " + std::to_string(in0.shape_class) + " " + JoinInts(perm));
      if (!r.has_shape) r.dims.clear();
    } else if (onnx && n.op_type == "Gather") {
      // data[:axis] + indices' dims + data[axis + 1:]
      r.dtype = in0.dtype;
      const StaticInfo idx = n.inputs.size() == 2 ? Get(n.inputs[1]) : StaticInfo{};
      const int64_t axis = n.attrs.GetInt("axis", 0);
      const int64_t rank = static_cast<int64_t>(in0.dims.size());
      if (idx.has_shape && in0.has_shape && axis >= -rank && axis < rank) {
        const auto a = static_cast<std::ptrdiff_t>(axis < 0 ? axis + rank : axis);
        r.has_shape = true;
        r.dims.assign(in0.dims.begin(), in0.dims.begin() + a);
        r.dims.insert(r.dims.end(), idx.dims.begin(), idx.dims.end());
        r.dims.insert(r.dims.end(), in0.dims.begin() + a + 1, in0.dims.end());
      } else if (idx.has_shape && !in0.has_shape && in0.shape_class >= 0 &&
                 std::all_of(idx.dims.begin(), idx.dims.end(), IsNumber)) {
        std::vector<int64_t> idx_dims;
        for (const std::string& d : idx.dims) idx_dims.push_back(std::stoll(d));
        r.shape_class = DerivedClass("gather " + std::to_string(in0.shape_class) + " " + std::to_string(axis) + " " +
                                     JoinInts(idx_dims));
      }
    } else if (onnx && n.op_type == "MatMul") {
      r.dtype = in0.dtype;
      const StaticInfo b = n.inputs.size() == 2 ? Get(n.inputs[1]) : StaticInfo{};
      if (in0.has_shape && b.has_shape && in0.dims.size() >= 2 && b.dims.size() >= 2) {
        r.has_shape = true;
        r.dims = BroadcastDims({in0.dims.begin(), in0.dims.end() - 2}, {b.dims.begin(), b.dims.end() - 2});
        r.dims.push_back(in0.dims[in0.dims.size() - 2]);
        r.dims.push_back(b.dims.back());
      }
    } else if (onnx && n.op_type == "Einsum") {
      r.dtype = in0.dtype;
      r.has_shape = EinsumDims(*this, n, &r.dims);
      if (!r.has_shape) r.dims.clear();
    } else if (KeepsDType(n)) {
      r.dtype = in0.dtype;
    } else if (onnx && OneOf(n.op_type, {"Shape", "Size", "ArgMax", "ArgMin", "NonZero"})) {
      r.dtype = DType::kI64;
    } else if (onnx && n.op_type == "Cast") {
      r.dtype = DTypeFromOnnxCode(n.attrs.GetInt("to", 0));
      r.has_shape = in0.has_shape;
      r.dims = in0.dims;
      r.shape_class = in0.shape_class;
    } else if (onnx && (n.op_type == "CastLike" || n.op_type == "Where") && n.inputs.size() > 1) {
      r.dtype = Get(n.inputs[1]).dtype;
    } else if (onnx && OneOf(n.op_type, {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or",
                                          "Xor", "Not", "IsNaN", "IsInf"})) {
      r.dtype = DType::kBool;
    } else if (onnx && n.op_type == "ConstantOfShape") {
      const Attribute* v = n.attrs.Find("value");
      r.dtype = v && v->kind == Attribute::Kind::kTensor ? v->t.dtype() : DType::kF32;
    }
    if (onnx && n.op_type == "Split")  // every part has the input's dtype
      for (size_t o = 1; o < n.outputs.size(); ++o) info_[n.outputs[o]].dtype = in0.dtype;
    if (!r.has_shape && r.shape_class < 0) r.shape_class = next_class_++;  // a shape of its own
    info_[out] = std::move(r);
  }
}

const StaticInfo& StaticInfoMap::Get(const std::string& value) const {
  auto it = info_.find(value);
  return it == info_.end() ? unknown_ : it->second;
}

bool SameShape(const StaticInfo& a, const StaticInfo& b) {
  return a.has_shape && b.has_shape && a.dims == b.dims;
}

}  // namespace itkit::passes
