// Helpers the pass and session tests share: building small graphs by hand, random
// inputs, running a model with passes switched off, and comparing outputs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "itkit/passes.h"
#include "itkit/session.h"

namespace itkit::test {

inline Tensor Random(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

inline std::vector<Dim> Dims(const std::vector<int64_t>& v) {
  std::vector<Dim> d;
  for (int64_t x : v) d.push_back(Dim{x, ""});
  return d;
}

inline ValueInfo F32Input(const std::string& name, std::vector<Dim> dims) {
  ValueInfo v;
  v.name = name;
  v.dtype = DType::kF32;
  v.has_shape = true;
  v.dims = std::move(dims);
  return v;
}

// An opset-17 model built node by node; inputs and outputs f32.
struct GraphBuilder {
  Model m;
  GraphBuilder() { m.graph.opsets[""] = 17; }
  Graph& g() { return m.graph; }
  void Input(const std::string& name, std::vector<Dim> dims) { m.graph.inputs.push_back(F32Input(name, std::move(dims))); }
  void InputOfShape(const std::string& name, const Shape& shape) { Input(name, Dims(shape)); }
  Node& Add(const std::string& op, std::vector<std::string> in, const std::string& out) {
    Node n;
    n.name = out + "_node";
    n.op_type = op;
    n.inputs = std::move(in);
    n.outputs = {out};
    m.graph.nodes.push_back(n);
    return m.graph.nodes.back();
  }
  void Output(const std::string& name) { m.graph.outputs.push_back(ValueInfo{name, DType::kF32, false, {}}); }
};

inline std::vector<std::string> EveryPass() {
  std::vector<std::string> names;
  for (const PassInfo& p : AllPasses()) names.push_back(p.name);
  return names;
}

// Runs `model` with the given passes disabled.
inline std::vector<Tensor> RunModel(const Model& model, const std::vector<Tensor>& inputs,
                                    std::vector<std::string> disabled = {}) {
  SessionOptions o;
  o.disabled_passes = std::move(disabled);
  o.threads = 2;
  auto s = Session::Create(model, o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return {};
  auto out = (*s)->Run(inputs);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? *out : std::vector<Tensor>{};
}

// max |a - b| / max(1, max |b|).
inline double RelativeError(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return 1e30;
  double diff = 0.0, scale = 1.0;
  for (int64_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b.data<float>()[i])));
  }
  return diff / scale;
}

}  // namespace itkit::test
