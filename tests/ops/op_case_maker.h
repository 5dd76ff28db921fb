// The pieces the op-case files share (op_cases.cpp, op_cases_conv.cpp): the random
// source of every case, f16 copies, small tensors, and the node and case builders.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "backend_ops_harness.h"

namespace itkit::test::ops {

class Maker {
 public:
  explicit Maker(uint32_t seed) : rng_(seed) {}
  int64_t Int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  float Real(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  bool Coin(double p = 0.5) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  T Pick(std::initializer_list<T> v) {
    return *(v.begin() + Int(0, static_cast<int64_t>(v.size()) - 1));
  }
  // Magnitude in [lo, hi], random sign, plus `offset`.
  Tensor Signed(const Shape& s, float lo = 0.1f, float hi = 1.0f, float offset = 0.0f) {
    Tensor t = Tensor::Allocate(DType::kF32, s).value();
    for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = offset + (Coin() ? 1.0f : -1.0f) * Real(lo, hi);
    return t;
  }
  Tensor Positive(const Shape& s, float lo = 0.1f, float hi = 1.0f) {
    Tensor t = Tensor::Allocate(DType::kF32, s).value();
    for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = Real(lo, hi);
    return t;
  }

 private:
  std::mt19937 rng_;
};

inline Tensor Half(const Tensor& f) {
  Tensor h = Tensor::Allocate(DType::kF16, f.shape()).value();
  for (int64_t i = 0; i < f.size(); ++i) h.data<uint16_t>()[i] = FloatToHalf(f.data<float>()[i]);
  return h;
}

// Magnitudes in [0.1, 1] * scale with random signs (never zero).
inline Tensor RandomF32(Shape shape, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> mag(0.1f, 1.0f);
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = scale * mag(rng) * (rng() & 1 ? 1.0f : -1.0f);
  return t;
}

inline Tensor I64(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::FromVector(v, {n}).value();
}

inline Tensor F32(std::vector<float> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::FromVector(v, {n}).value();
}

inline std::string Str(const std::vector<int64_t>& v) { return ShapeToString(v); }

// A node with inputs in0.. (present[i] false: omitted) and outputs out0..
inline Node MakeNode(const std::string& op, size_t inputs, size_t outputs = 1, const std::string& domain = "",
              std::vector<bool> present = {}) {
  Node n;
  n.name = op + "_case";
  n.op_type = op;
  n.domain = domain;
  for (size_t i = 0; i < inputs; ++i)
    n.inputs.push_back(i < present.size() && !present[i] ? std::string() : "in" + std::to_string(i));
  for (size_t o = 0; o < outputs; ++o) n.outputs.push_back("out" + std::to_string(o));
  return n;
}

inline OpCase Case(std::string family, std::string name, Node node, std::vector<Tensor> inputs,
            std::vector<bool> constant = {}) {
  OpCase c;
  c.family = std::move(family);
  c.name = std::move(name);
  c.node = std::move(node);
  c.inputs = std::move(inputs);
  c.constant = std::move(constant);
  c.constant.resize(c.inputs.size(), false);
  return c;
}

// Convolution families (op_cases_conv.cpp). The stem cases are drawn after every other
// family, so adding them left the earlier cases' random draws unchanged.
void AddConvCases(Maker& m, std::vector<OpCase>& out);
void AddStemConvCases(Maker& m, std::vector<OpCase>& out);
// LayerNorm, Gather, Reduce* (op_cases_transformer.cpp), drawn after the stem cases.
void AddTransformerCases(Maker& m, std::vector<OpCase>& out);

}  // namespace itkit::test::ops
