// Reduction family: hand-derived values for Reduce* (axes attribute vs input,
// keepdims, noop_with_empty_axes, non-adjacent axes), large-sum accuracy, ArgMax/ArgMin
// with select_last_index, and Softmax's opset-11 (flatten) vs opset-13 (one axis)
// semantics.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "cpu/fast_exp.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using test::MakeNode;
using test::RunNode;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

template <typename T>
Tensor T_(std::vector<T> v, Shape s) {
  auto t = Tensor::FromVector<T>(v, std::move(s));
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}
Tensor F(std::vector<float> v, Shape s) { return T_<float>(std::move(v), std::move(s)); }
Tensor I64(std::vector<int64_t> v, Shape s) { return T_<int64_t>(std::move(v), std::move(s)); }
Tensor Ints(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return I64(std::move(v), {n});
}
Tensor Iota(Shape s) {
  std::vector<float> v(static_cast<size_t>(ElementCount(s)));
  std::iota(v.begin(), v.end(), 0.0f);
  return F(v, std::move(s));
}
Tensor Random(Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-5, 5);
  std::vector<float> v(static_cast<size_t>(ElementCount(s)));
  for (float& x : v) x = u(rng);
  return F(v, std::move(s));
}

Node Op(const std::string& type, size_t num_inputs) {
  std::vector<std::string> in;
  for (size_t i = 0; i < num_inputs; ++i) in.push_back(std::string(1, static_cast<char>('a' + i)));
  return MakeNode(type, in, {"y"});
}
Node Reduce(const std::string& type, std::vector<int64_t> axes, int64_t keepdims = 1) {
  Node n = Op(type, 1);
  if (!axes.empty()) n.attrs.SetInts("axes", std::move(axes));
  n.attrs.SetInt("keepdims", keepdims);
  return n;
}
Tensor Run1(const Node& node, std::vector<Tensor> inputs, int64_t opset = 17) {
  auto out = RunNode(node, inputs, opset);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return Tensor();
  return (*out)[0];
}
template <typename T>
std::vector<T> Values(const Tensor& t) {
  if (!t.defined()) return {};
  return std::vector<T>(t.data<T>(), t.data<T>() + t.size());
}
void ExpectFloats(const Tensor& t, const Shape& shape, const std::vector<float>& want, float tol = 1e-6f) {
  ASSERT_TRUE(t.defined());
  ASSERT_EQ(t.shape(), shape);
  ASSERT_EQ(static_cast<size_t>(t.size()), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const float got = t.data<float>()[i];
    if (std::isnan(want[i])) EXPECT_TRUE(std::isnan(got)) << "at " << i;
    else if (std::isinf(want[i])) EXPECT_EQ(got, want[i]) << "at " << i;
    else EXPECT_NEAR(got, want[i], tol * std::max(1.0f, std::fabs(want[i]))) << "at " << i;
  }
}

TEST(Reduce, SumAxesAttributeInputKeepdimsAndNoop) {
  const Tensor x = F({1, 2, 3, 4, 5, 6}, {2, 3});
  // Opset 11: axes attribute.
  ExpectFloats(Run1(Reduce("ReduceSum", {1}), {x}, 11), {2, 1}, {6, 15});
  ExpectFloats(Run1(Reduce("ReduceSum", {-1}, 0), {x}, 11), {2}, {6, 15});
  // Opset 13: axes input; none means all.
  Node s13 = Op("ReduceSum", 2);
  ExpectFloats(Run1(s13, {x, Ints({0})}), {1, 3}, {5, 7, 9});
  ExpectFloats(Run1(Op("ReduceSum", 1), {x}), {1, 1}, {21});
  // noop_with_empty_axes: empty axes is the identity.
  Node noop = Op("ReduceSum", 2);
  noop.attrs.SetInt("noop_with_empty_axes", 1);
  ExpectFloats(Run1(noop, {x, Ints({})}), {2, 3}, {1, 2, 3, 4, 5, 6});
  EXPECT_FALSE(RunNode(Reduce("ReduceSum", {2}), {x}, 11).ok());
  EXPECT_FALSE(RunNode(Reduce("ReduceSum", {0, -2}), {x}, 11).ok());
}

TEST(Reduce, EveryKindFromHandValues) {
  const Tensor x = F({1, 2, 3, 4, 5, 6}, {2, 3});
  ExpectFloats(Run1(Reduce("ReduceMean", {0}), {x}), {1, 3}, {2.5f, 3.5f, 4.5f});
  ExpectFloats(Run1(Reduce("ReduceMax", {1}, 0), {x}), {2}, {3, 6});
  ExpectFloats(Run1(Reduce("ReduceMin", {1}, 0), {x}), {2}, {1, 4});
  ExpectFloats(Run1(Reduce("ReduceProd", {1}, 0), {x}), {2}, {6, 120});
  ExpectFloats(Run1(Reduce("ReduceL1", {1}, 0), {F({-1, 2, 3, -4}, {2, 2})}), {2}, {3, 7});
  ExpectFloats(Run1(Reduce("ReduceL2", {1}, 0), {F({3, 4, 5, 12}, {2, 2})}), {2}, {5, 13});
  ExpectFloats(Run1(Reduce("ReduceSumSquare", {1}, 0), {F({1, 2, 3, 4}, {2, 2})}), {2}, {5, 25});
  ExpectFloats(Run1(Reduce("ReduceLogSum", {1}, 0), {F({1, 2, 3, 4}, {2, 2})}), {2}, {1.0986123f, 1.9459101f});
  ExpectFloats(Run1(Reduce("ReduceLogSumExp", {1}, 0), {F({0, 0, 1, 1}, {2, 2})}), {2}, {0.6931472f, 1.6931472f});
  ExpectFloats(Run1(Reduce("ReduceMax", {0}, 0), {F({1, kNaN, 3}, {3})}), {}, {kNaN});
  // Integers accumulate exactly; the mean truncates.
  EXPECT_EQ(Values<int64_t>(Run1(Reduce("ReduceSum", {1}, 0), {I64({1, 2, 3, 4}, {2, 2})})), (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(Values<int64_t>(Run1(Reduce("ReduceMean", {0}, 0), {I64({1, 2}, {2})})), (std::vector<int64_t>{1}));
  // Empty reductions give the identity of the combine.
  ExpectFloats(Run1(Reduce("ReduceSum", {1}, 0), {F({}, {2, 0})}), {2}, {0, 0});
  ExpectFloats(Run1(Reduce("ReduceMax", {1}, 0), {F({}, {2, 0})}), {2},
               {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()});
}

TEST(Reduce, NonAdjacentAxes) {
  // x[i,j,k] = 12i + 4j + k; sum over i and k = 60 + 32j.
  ExpectFloats(Run1(Reduce("ReduceSum", {0, 2}, 0), {Iota({2, 3, 4})}), {3}, {60, 92, 124});
  ExpectFloats(Run1(Reduce("ReduceMax", {0, 2}), {Iota({2, 3, 4})}), {1, 3, 1}, {15, 19, 23});
}

TEST(Reduce, LargeSumsAccumulateInDouble) {
  // 3,000,001 copies of float(0.1): a float accumulator drifts by percents.
  const int64_t n = 3000001;
  const Tensor x = F(std::vector<float>(static_cast<size_t>(n), 0.1f), {1, n});
  const double exact = static_cast<double>(n) * static_cast<double>(0.1f);
  Tensor s = Run1(Reduce("ReduceSum", {}, 0), {x});
  ASSERT_EQ(s.shape(), Shape{});
  EXPECT_NEAR(s.data<float>()[0], exact, exact * 1e-7);
  Tensor m = Run1(Reduce("ReduceMean", {1}, 0), {x});
  EXPECT_NEAR(m.data<float>()[0], 0.1f, 1e-7);
  // The inner (strided) path: mean over the channel axis of [2, 3, 70000].
  const Tensor y = Random({2, 3, 70000}, 3);
  Tensor ym = Run1(Reduce("ReduceMean", {1}, 0), {y});
  ASSERT_EQ(ym.shape(), (Shape{2, 70000}));
  for (int64_t o = 0; o < 2; ++o)
    for (int64_t j = 0; j < 70000; j += 997) {
      double want = 0;
      for (int64_t c = 0; c < 3; ++c) want += y.data<float>()[(o * 3 + c) * 70000 + j];
      ASSERT_NEAR(ym.data<float>()[o * 70000 + j], want / 3, 1e-5);
    }
}

TEST(Reduce, ArgMaxArgMin) {
  const Tensor x = F({2, 1, 2, 0, 5, 5}, {2, 3});
  Node am = Op("ArgMax", 1);
  am.attrs.SetInt("axis", 1);
  Tensor a = Run1(am, {x});
  EXPECT_EQ(a.dtype(), DType::kI64);
  EXPECT_EQ(a.shape(), (Shape{2, 1}));
  EXPECT_EQ(Values<int64_t>(a), (std::vector<int64_t>{0, 1}));
  am.attrs.SetInt("select_last_index", 1);
  EXPECT_EQ(Values<int64_t>(Run1(am, {x})), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(Values<int64_t>(Run1(Op("ArgMax", 1), {x})), (std::vector<int64_t>{0, 1, 1}));
  Node amin = Op("ArgMin", 1);
  amin.attrs.SetInt("axis", -1);
  amin.attrs.SetInt("keepdims", 0);
  Tensor b = Run1(amin, {x});
  EXPECT_EQ(b.shape(), (Shape{2}));
  EXPECT_EQ(Values<int64_t>(b), (std::vector<int64_t>{1, 0}));
  amin.attrs.SetInt("select_last_index", 1);
  EXPECT_EQ(Values<int64_t>(Run1(amin, {F({2, 1, 1}, {3})})), (std::vector<int64_t>{2}));
  EXPECT_EQ(Values<int64_t>(Run1(Op("ArgMax", 1), {F({1, kNaN, 3}, {3})})), (std::vector<int64_t>{1}));
  // Over the channel axis of a volume (inner path) against a direct loop.
  const Tensor v = Random({2, 4, 1000}, 5);
  Node ch = Op("ArgMax", 1);
  ch.attrs.SetInt("axis", 1);
  ch.attrs.SetInt("keepdims", 0);
  Tensor got = Run1(ch, {v});
  ASSERT_EQ(got.shape(), (Shape{2, 1000}));
  for (int64_t o = 0; o < 2; ++o)
    for (int64_t j = 0; j < 1000; ++j) {
      int64_t best = 0;
      for (int64_t c = 1; c < 4; ++c)
        if (v.data<float>()[(o * 4 + c) * 1000 + j] > v.data<float>()[(o * 4 + best) * 1000 + j]) best = c;
      ASSERT_EQ(got.data<int64_t>()[o * 1000 + j], best);
    }
  Node bad = Op("ArgMax", 1);
  bad.attrs.SetInt("axis", 2);
  EXPECT_FALSE(RunNode(bad, {x}).ok());
}

TEST(Reduce, SoftmaxOpset13VersusOpset11) {
  ExpectFloats(Run1(Op("Softmax", 1), {F({1, 2, 3, 4}, {2, 2})}), {2, 2},
               {0.26894142f, 0.73105858f, 0.26894142f, 0.73105858f});
  // Opset 13, axis 1 of [2,2,2]: pairs two apart → sigmoid(-2), sigmoid(2).
  Node ax1 = Op("Softmax", 1);
  ax1.attrs.SetInt("axis", 1);
  ExpectFloats(Run1(ax1, {Iota({2, 2, 2})}, 13), {2, 2, 2},
               {0.11920292f, 0.11920292f, 0.88079708f, 0.88079708f, 0.11920292f, 0.11920292f, 0.88079708f, 0.88079708f});
  // Opset 11, axis 1: flattened to [2, 4], softmax over 0..3 (+4) per row.
  ExpectFloats(Run1(ax1, {Iota({2, 2, 2})}, 11), {2, 2, 2},
               {0.0320586f, 0.0871443f, 0.2368828f, 0.6439143f, 0.0320586f, 0.0871443f, 0.2368828f, 0.6439143f});
  // Opset 11's default axis is 1, opset 13's is -1: same here for rank 2.
  ExpectFloats(Run1(Op("Softmax", 1), {F({1000, 1001}, {1, 2})}, 11), {1, 2}, {0.26894142f, 0.73105858f});
  ExpectFloats(Run1(Op("LogSoftmax", 1), {F({1, 2}, {2})}), {2}, {-1.3132617f, -0.3132617f});
  ExpectFloats(Run1(ax1, {Iota({2, 2, 2})}, 11), {2, 2, 2},
               {0.0320586f, 0.0871443f, 0.2368828f, 0.6439143f, 0.0320586f, 0.0871443f, 0.2368828f, 0.6439143f});
  ExpectFloats(Run1(Op("Hardmax", 1), {F({1, 3, 3, 2, 0, 1}, {2, 3})}), {2, 3}, {0, 1, 0, 1, 0, 0});
  Node bad = Op("Softmax", 1);
  bad.attrs.SetInt("axis", 2);
  EXPECT_FALSE(RunNode(bad, {F({1, 2}, {1, 2})}).ok());
}

// Softmax's exp against libm's (in double) over [-87, 0]: a uniform grid, and tiny
// magnitudes down to the smallest floats.
TEST(Reduce, SoftmaxExpMatchesStdExp) {
  double worst = 0.0;
  float worst_x = 0.0f;
  auto check = [&](float x) {
    const double want = std::exp(static_cast<double>(x));
    const double rel = std::fabs(cpu::ExpOfNonPositive(x) - want) / want;
    if (rel > worst) worst = rel, worst_x = x;
  };
  for (int k = 0; k <= 870000; ++k) check(static_cast<float>(k) * -1e-4f);
  for (float x = -1e-3f; x < -1e-38f; x *= 0.97f) check(x);
  check(-87.0f);
  EXPECT_LT(worst, 2.5e-7) << "at x = " << worst_x;  // 2 ulp of a float
  EXPECT_EQ(cpu::ExpOfNonPositive(0.0f), 1.0f);
  EXPECT_EQ(cpu::ExpOfNonPositive(-0.0f), 1.0f);
  EXPECT_EQ(cpu::ExpOfNonPositive(-88.0f), 0.0f);  // below the normal range
  EXPECT_EQ(cpu::ExpOfNonPositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(cpu::ExpOfNonPositive(kNaN)));
  // A row with a NaN is NaN throughout, as with std::exp; -inf entries give 0.
  const Tensor s = Run1(Op("Softmax", 1), {F({1, kNaN, 2}, {1, 3})});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(s.data<float>()[i])) << i;
  ExpectFloats(Run1(Op("Softmax", 1), {F({-std::numeric_limits<float>::infinity(), 0, 0}, {1, 3})}), {1, 3},
               {0.0f, 0.5f, 0.5f});
}

TEST(Reduce, HalfInputsComputeInFloat) {
  Node to_f16 = MakeNode("Cast", {"a"}, {"y"});
  to_f16.attrs.SetInt("to", 10);
  Node to_f32 = MakeNode("Cast", {"a"}, {"y"});
  to_f32.attrs.SetInt("to", 1);
  const Tensor h = Run1(to_f16, {F({1, 2, 3, 4}, {2, 2})});
  Tensor s = Run1(Op("Softmax", 1), {h});
  ASSERT_EQ(s.dtype(), DType::kF16);
  ExpectFloats(Run1(to_f32, {s}), {2, 2}, {0.26894142f, 0.73105858f, 0.26894142f, 0.73105858f}, 1e-3f);
  ExpectFloats(Run1(to_f32, {Run1(Reduce("ReduceSum", {0}, 0), {h})}), {2}, {4, 6});
  Node am = Op("ArgMax", 1);
  am.attrs.SetInt("axis", 1);
  EXPECT_EQ(Values<int64_t>(Run1(am, {h})), (std::vector<int64_t>{1, 1}));
}

TEST(Reduce, SoftmaxOverChannelsMatchesDirectLoop) {
  const Tensor x = Random({2, 5, 3000}, 9);
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    Node n = Op(op, 1);
    n.attrs.SetInt("axis", 1);
    Tensor y = Run1(n, {x});
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t j = 0; j < 3000; j += 7) {
        double m = -1e30, sum = 0;
        for (int64_t c = 0; c < 5; ++c) m = std::max<double>(m, x.data<float>()[(o * 5 + c) * 3000 + j]);
        for (int64_t c = 0; c < 5; ++c) sum += std::exp(x.data<float>()[(o * 5 + c) * 3000 + j] - m);
        for (int64_t c = 0; c < 5; ++c) {
          const int64_t i = (o * 5 + c) * 3000 + j;
          const double want = std::string(op) == "Softmax" ? std::exp(x.data<float>()[i] - m) / sum
                                                           : x.data<float>()[i] - m - std::log(sum);
          ASSERT_NEAR(y.data<float>()[i], want, 1e-5) << op << " at " << i;
        }
      }
  }
}

}  // namespace
}  // namespace itkit
