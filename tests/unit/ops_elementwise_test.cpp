// Elementwise family: hand-derived values for each op and the tricky semantics
// (broadcasting, integer division/modulo signs, NaN in Max/Min, Cast truncation),
// broadcast fast paths against a naive index-math reference, and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "cpu/elementwise_internal.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using test::MakeNode;
using test::RunNode;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename T>
Tensor T_(std::vector<T> v, Shape s) {
  auto t = Tensor::FromVector<T>(v, std::move(s));
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}
Tensor F(std::vector<float> v, Shape s) { return T_<float>(std::move(v), std::move(s)); }
Tensor I64(std::vector<int64_t> v, Shape s) { return T_<int64_t>(std::move(v), std::move(s)); }
Tensor I32(std::vector<int32_t> v, Shape s) { return T_<int32_t>(std::move(v), std::move(s)); }
Tensor U8(std::vector<uint8_t> v, Shape s) { return T_<uint8_t>(std::move(v), std::move(s)); }
Tensor B(std::vector<uint8_t> v, Shape s) {
  auto t = Tensor::Allocate(DType::kBool, std::move(s));
  EXPECT_TRUE(t.ok());
  for (size_t i = 0; i < v.size(); ++i) t->data<uint8_t>()[i] = v[i];
  return std::move(t).value();
}

// Runs a node with inputs named a, b, c... and returns output `i`.
Tensor Run1(Node node, std::vector<Tensor> inputs, int64_t opset = 17, size_t i = 0) {
  auto out = RunNode(node, inputs, opset);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return Tensor();
  return (*out)[i];
}
Node Op(const std::string& type, size_t num_inputs, size_t num_outputs = 1) {
  std::vector<std::string> in, out;
  for (size_t i = 0; i < num_inputs; ++i) in.push_back(std::string(1, static_cast<char>('a' + i)));
  for (size_t i = 0; i < num_outputs; ++i) out.push_back("y" + std::to_string(i));
  return MakeNode(type, in, out);
}

template <typename T>
std::vector<T> Values(const Tensor& t) {
  if (!t.defined()) return {};
  return std::vector<T>(t.data<T>(), t.data<T>() + t.size());
}

void ExpectFloats(const Tensor& t, const Shape& shape, const std::vector<float>& want, float tol = 1e-6f) {
  ASSERT_TRUE(t.defined());
  ASSERT_EQ(t.dtype(), DType::kF32);
  ASSERT_EQ(t.shape(), shape);
  ASSERT_EQ(static_cast<size_t>(t.size()), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const float got = t.data<float>()[i];
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got)) << "at " << i << ": " << got;
    } else if (std::isinf(want[i])) {
      EXPECT_EQ(got, want[i]) << "at " << i;
    } else {
      EXPECT_NEAR(got, want[i], tol * std::max(1.0f, std::fabs(want[i]))) << "at " << i;
    }
  }
}

Status RunStatus(Node node, std::vector<Tensor> inputs, int64_t opset = 17) {
  return RunNode(node, inputs, opset).status();
}

// ---- unary ----------------------------------------------------------------

TEST(ElementwiseUnary, ActivationsFromHandValues) {
  ExpectFloats(Run1(Op("Relu", 1), {F({-1, 0, 2, kNaN}, {4})}), {4}, {0, 0, 2, kNaN});
  Node leaky = Op("LeakyRelu", 1);
  leaky.attrs.SetFloat("alpha", 0.1f);
  ExpectFloats(Run1(leaky, {F({-2, 3}, {2})}), {2}, {-0.2f, 3});
  // Elu(-1) = e^-1 - 1; Selu(-1) = 1.0507 * 1.67326 * (e^-1 - 1).
  ExpectFloats(Run1(Op("Elu", 1), {F({-1, 2}, {2})}), {2}, {-0.63212056f, 2});
  ExpectFloats(Run1(Op("Selu", 1), {F({-1, 1}, {2})}), {2}, {-1.1113307f, 1.0507010f});
  ExpectFloats(Run1(Op("Sigmoid", 1), {F({0, 2, -100}, {3})}), {3}, {0.5f, 0.88079708f, 0.0f});
  // HardSigmoid: max(0, min(1, 0.2x + 0.5)).
  ExpectFloats(Run1(Op("HardSigmoid", 1), {F({1, -5, 5}, {3})}), {3}, {0.7f, 0, 1});
  ExpectFloats(Run1(Op("Tanh", 1), {F({0.5f}, {1})}), {1}, {0.46211716f});
  ExpectFloats(Run1(Op("Erf", 1), {F({0.5f, -1}, {2})}), {2}, {0.52049988f, -0.84270079f});
  // Softplus(0) = ln 2; large inputs must not overflow.
  ExpectFloats(Run1(Op("Softplus", 1), {F({0, 100, -100}, {3})}), {3}, {0.69314718f, 100, 3.7200760e-44f});
  ExpectFloats(Run1(Op("Softsign", 1), {F({3, -1}, {2})}), {2}, {0.75f, -0.5f});
  ExpectFloats(Run1(Op("HardSwish", 1), {F({-4, 1, 4}, {3})}), {3}, {0, 1 * (1 / 6.0f + 0.5f), 4});
  Node thr = Op("ThresholdedRelu", 1);
  thr.attrs.SetFloat("alpha", 2.0f);
  ExpectFloats(Run1(thr, {F({1, 2, 3}, {3})}), {3}, {0, 0, 3});
}

TEST(ElementwiseUnary, MathFromHandValues) {
  ExpectFloats(Run1(Op("Sqrt", 1), {F({4, 0, -1}, {3})}), {3}, {2, 0, kNaN});
  ExpectFloats(Run1(Op("Exp", 1), {F({1, 0}, {2})}), {2}, {2.7182818f, 1});
  ExpectFloats(Run1(Op("Log", 1), {F({2.7182818f, 0}, {2})}), {2}, {1, -kInf});
  ExpectFloats(Run1(Op("Abs", 1), {F({-3, 2}, {2})}), {2}, {3, 2});
  ExpectFloats(Run1(Op("Neg", 1), {F({-3, 2}, {2})}), {2}, {3, -2});
  ExpectFloats(Run1(Op("Reciprocal", 1), {F({4, -0.5f}, {2})}), {2}, {0.25f, -2});
  ExpectFloats(Run1(Op("Floor", 1), {F({-1.5f, 1.5f}, {2})}), {2}, {-2, 1});
  ExpectFloats(Run1(Op("Ceil", 1), {F({-1.5f, 1.5f}, {2})}), {2}, {-1, 2});
  // Round: halves go to the even neighbour.
  ExpectFloats(Run1(Op("Round", 1), {F({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f}, {6})}), {6}, {0, 2, 2, -0.0f, -2, 2});
  ExpectFloats(Run1(Op("Sign", 1), {F({-2, 0, 3}, {3})}), {3}, {-1, 0, 1});
  ExpectFloats(Run1(Op("Sin", 1), {F({0, 1.5707964f}, {2})}), {2}, {0, 1});
  ExpectFloats(Run1(Op("Cos", 1), {F({0}, {1})}), {1}, {1});
}

TEST(ElementwiseUnary, IntegerAndBoolOps) {
  EXPECT_EQ(Values<int32_t>(Run1(Op("Abs", 1), {I32({-5, 7}, {2})})), (std::vector<int32_t>{5, 7}));
  EXPECT_EQ(Values<int64_t>(Run1(Op("Neg", 1), {I64({-5, 7}, {2})})), (std::vector<int64_t>{5, -7}));
  EXPECT_EQ(Values<int64_t>(Run1(Op("Sign", 1), {I64({-5, 0, 7}, {3})})), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(Values<int32_t>(Run1(Op("Relu", 1), {I32({-5, 7}, {2})})), (std::vector<int32_t>{0, 7}));
  Tensor n = Run1(Op("Not", 1), {B({1, 0}, {2})});
  EXPECT_EQ(n.dtype(), DType::kBool);
  EXPECT_EQ(Values<uint8_t>(n), (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("IsNaN", 1), {F({1, kNaN, kInf}, {3})})), (std::vector<uint8_t>{0, 1, 0}));
  Node isinf = Op("IsInf", 1);
  isinf.attrs.SetInt("detect_negative", 0);
  EXPECT_EQ(Values<uint8_t>(Run1(isinf, {F({kInf, -kInf, kNaN, 1}, {4})})), (std::vector<uint8_t>{1, 0, 0, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("IsInf", 1), {F({kInf, -kInf}, {2})})), (std::vector<uint8_t>{1, 1}));
}

TEST(ElementwiseUnary, IdentityAndDropout) {
  ExpectFloats(Run1(Op("Identity", 1), {F({1, 2}, {2})}), {2}, {1, 2});
  auto out = RunNode(Op("Dropout", 1, 2), {F({1, 2, 3}, {3})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ExpectFloats((*out)[0], {3}, {1, 2, 3});
  EXPECT_EQ((*out)[1].dtype(), DType::kBool);
  EXPECT_EQ(Values<uint8_t>((*out)[1]), (std::vector<uint8_t>{1, 1, 1}));
  // Training mode with a ratio would need randomness: refused, not guessed.
  Status s = RunStatus(Op("Dropout", 3), {F({1}, {1}), F({0.5f}, {}), B({1}, {})});
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.ToString();
  // Training mode with ratio 0 is the identity.
  ExpectFloats(Run1(Op("Dropout", 3), {F({4}, {1}), F({0.0f}, {}), B({1}, {})}), {1}, {4});
}

TEST(ElementwiseUnary, ClipAttributesAndInputs) {
  // Opset 11+: min/max are optional scalar inputs.
  ExpectFloats(Run1(Op("Clip", 3), {F({-2, 0.5f, 3, kNaN}, {4}), F({-1}, {}), F({1}, {})}), {4}, {-1, 0.5f, 1, kNaN});
  Node min_only = MakeNode("Clip", {"a", "b"}, {"y"});
  ExpectFloats(Run1(min_only, {F({-2, 5}, {2}), F({0}, {})}), {2}, {0, 5});
  Node max_only = MakeNode("Clip", {"a", "", "c"}, {"y"});
  ExpectFloats(Run1(max_only, {F({-2, 5}, {2}), Tensor(), F({1}, {})}), {2}, {-2, 1});
  // Opset 6: attributes.
  Node old = Op("Clip", 1);
  old.attrs.SetFloat("min", 0.0f);
  old.attrs.SetFloat("max", 2.0f);
  ExpectFloats(Run1(old, {F({-1, 1, 3}, {3})}, 6), {3}, {0, 1, 2});
  EXPECT_EQ(Values<int32_t>(Run1(Op("Clip", 3), {I32({-9, 4, 9}, {3}), I32({-5}, {}), I32({5}, {})})),
            (std::vector<int32_t>{-5, 4, 5}));
  // min > max gives max everywhere (numpy semantics).
  ExpectFloats(Run1(Op("Clip", 3), {F({-2, 3}, {2}), F({2}, {}), F({1}, {})}), {2}, {1, 1});
}

TEST(ElementwiseUnary, CastTruncatesAndRoundTripsHalf) {
  Node to_i32 = Op("Cast", 1);
  to_i32.attrs.SetInt("to", 6);
  EXPECT_EQ(Values<int32_t>(Run1(to_i32, {F({1.9f, -1.9f, 2.5f, -0.5f, kNaN}, {5})})),
            (std::vector<int32_t>{1, -1, 2, 0, 0}));
  Node to_bool = Op("Cast", 1);
  to_bool.attrs.SetInt("to", 9);
  Tensor b = Run1(to_bool, {F({0, 0.1f, -0.0f, kNaN, -3}, {5})});
  EXPECT_EQ(b.dtype(), DType::kBool);
  EXPECT_EQ(Values<uint8_t>(b), (std::vector<uint8_t>{0, 1, 0, 1, 1}));
  Node to_f16 = Op("Cast", 1);
  to_f16.attrs.SetInt("to", 10);
  Tensor h = Run1(to_f16, {F({1.0f / 3.0f, 65520.0f, -2}, {3})});
  ASSERT_EQ(h.dtype(), DType::kF16);
  EXPECT_EQ(Values<uint16_t>(h), (std::vector<uint16_t>{0x3555, 0x7c00, 0xc000}));
  Node to_f32 = Op("Cast", 1);
  to_f32.attrs.SetInt("to", 1);
  ExpectFloats(Run1(to_f32, {h}), {3}, {0.333251953125f, kInf, -2});
  ExpectFloats(Run1(to_f32, {I64({-3, 1 << 20}, {2})}), {2}, {-3, 1 << 20});
  ExpectFloats(Run1(to_f32, {B({1, 0}, {2})}), {2}, {1, 0});
  Node to_i64 = Op("Cast", 1);
  to_i64.attrs.SetInt("to", 7);
  EXPECT_EQ(Values<int64_t>(Run1(to_i64, {U8({255, 0}, {2})})), (std::vector<int64_t>{255, 0}));
  EXPECT_EQ(Values<int64_t>(Run1(to_i64, {h})), (std::vector<int64_t>{0, std::numeric_limits<int64_t>::max(), -2}));
  Node to_u8 = Op("Cast", 1);
  to_u8.attrs.SetInt("to", 2);
  EXPECT_EQ(Values<uint8_t>(Run1(to_u8, {I32({300, -1}, {2})})), (std::vector<uint8_t>{44, 255}));  // modular
  Node like = Op("CastLike", 2);
  EXPECT_EQ(Values<int64_t>(Run1(like, {F({2.7f}, {1}), I64({0}, {1})})), (std::vector<int64_t>{2}));
  // double is not one of our dtypes.
  Node to_double = Op("Cast", 1);
  to_double.attrs.SetInt("to", 11);
  EXPECT_EQ(RunStatus(to_double, {F({1}, {1})}).code(), StatusCode::kUnsupported);
}

// Cast's branch-free conversions must equal the runtime's reference bit for bit
// (checked over all 2^32 floats once; here every 4099th pattern plus edge cases,
// and all halves).
TEST(ElementwiseUnary, FastHalfConversionsMatchReference) {
  auto check = [](uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    ASSERT_EQ(cpu::HalfFromFloatFast(f), FloatToHalf(f)) << std::hex << bits;
  };
  for (uint64_t b = 0; b <= 0xffffffffull; b += 4099) check(static_cast<uint32_t>(b));
  // Rounding boundaries: half-way cases, subnormal/normal and overflow edges, inf, NaN.
  for (uint32_t b : {0x33000000u, 0x33000001u, 0x387fefffu, 0x387ff000u, 0x38800000u, 0x3f801000u, 0x3f803000u,
                     0x477fefffu, 0x477ff000u, 0x47800000u, 0x7f800000u, 0x7f800001u, 0xffc00000u, 0x80000000u})
    check(b);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float fast = cpu::FloatFromHalfFast(static_cast<uint16_t>(h)), ref = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(std::memcmp(&fast, &ref, 4), 0) << std::hex << h;
  }
}

// ---- binary ---------------------------------------------------------------

TEST(ElementwiseBinary, BroadcastingShapes) {
  // Same shape, scalar, trailing vector, mutual and per-channel broadcasting.
  ExpectFloats(Run1(Op("Add", 2), {F({1, 2, 3}, {3}), F({10, 20, 30}, {3})}), {3}, {11, 22, 33});
  ExpectFloats(Run1(Op("Sub", 2), {F({1, 2, 3}, {3}), F({1}, {})}), {3}, {0, 1, 2});
  ExpectFloats(Run1(Op("Sub", 2), {F({1}, {}), F({1, 2, 3}, {3})}), {3}, {0, -1, -2});
  ExpectFloats(Run1(Op("Mul", 2), {F({1, 2, 3, 4, 5, 6}, {2, 3}), F({1, 10, 100}, {3})}), {2, 3},
               {1, 20, 300, 4, 50, 600});
  ExpectFloats(Run1(Op("Add", 2), {F({1, 2}, {2, 1}), F({10, 20, 30}, {1, 3})}), {2, 3}, {11, 21, 31, 12, 22, 32});
  // [1,2,1,1,1] against [1,2,2,1,2]: channel c adds 100*(c+1).
  ExpectFloats(Run1(Op("Add", 2), {F({0, 1, 2, 3, 4, 5, 6, 7}, {1, 2, 2, 1, 2}), F({100, 200}, {1, 2, 1, 1, 1})}),
               {1, 2, 2, 1, 2}, {100, 101, 102, 103, 204, 205, 206, 207});
  // Non-contiguous broadcast on both sides: [2,1,3] + [1,2,1].
  ExpectFloats(Run1(Op("Add", 2), {F({0, 1, 2, 3, 4, 5}, {2, 1, 3}), F({10, 20}, {1, 2, 1})}), {2, 2, 3},
               {10, 11, 12, 20, 21, 22, 13, 14, 15, 23, 24, 25});
  // Empty tensors broadcast to empty outputs.
  Tensor e = Run1(Op("Add", 2), {F({}, {0, 3}), F({1, 2, 3}, {3})});
  EXPECT_EQ(e.shape(), (Shape{0, 3}));
}

TEST(ElementwiseBinary, IntegerDivisionAndModuloSigns) {
  // Division truncates toward zero (C, ONNX), unlike Python's floor division.
  EXPECT_EQ(Values<int64_t>(Run1(Op("Div", 2), {I64({7, -7, 7, -7}, {4}), I64({2, 2, -2, -2}, {4})})),
            (std::vector<int64_t>{3, -3, -3, 3}));
  EXPECT_EQ(Values<int32_t>(Run1(Op("Div", 2), {I32({7, std::numeric_limits<int32_t>::min()}, {2}), I32({0, -1}, {2})})),
            (std::vector<int32_t>{0, std::numeric_limits<int32_t>::min()}));  // defined instead of trapping
  // fmod=0: sign of the divisor (Python %); fmod=1: sign of the dividend (C fmod).
  EXPECT_EQ(Values<int64_t>(Run1(Op("Mod", 2), {I64({-4, 7, 5, -5}, {4}), I64({3, -3, 3, -3}, {4})})),
            (std::vector<int64_t>{2, -2, 2, -2}));
  Node fmod = Op("Mod", 2);
  fmod.attrs.SetInt("fmod", 1);
  EXPECT_EQ(Values<int64_t>(Run1(fmod, {I64({-4, 7, 5, -5}, {4}), I64({3, -3, 3, -3}, {4})})),
            (std::vector<int64_t>{-1, 1, 2, -2}));
  ExpectFloats(Run1(fmod, {F({5.5f, -5.5f}, {2}), F({2, 2}, {2})}), {2}, {1.5f, -1.5f});
  ExpectFloats(Run1(Op("Mod", 2), {F({5.5f, -5.5f}, {2}), F({2, 2}, {2})}), {2}, {1.5f, 0.5f});
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Div", 2), {U8({200, 9}, {2}), U8({3, 0}, {2})})), (std::vector<uint8_t>{66, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Add", 2), {U8({200}, {1}), U8({100}, {1})})), (std::vector<uint8_t>{44}));
}

TEST(ElementwiseBinary, PowMixedTypes) {
  ExpectFloats(Run1(Op("Pow", 2), {F({2, 3}, {2}), F({3, 0.5f}, {2})}), {2}, {8, 1.7320508f});
  ExpectFloats(Run1(Op("Pow", 2), {F({2, 3}, {2}), I64({2, 3}, {2})}), {2}, {4, 27});
  ExpectFloats(Run1(Op("Pow", 2), {F({-3, 1.5f}, {2}), F({2}, {})}), {2}, {9, 2.25f});  // squaring fast path
  EXPECT_EQ(Values<int64_t>(Run1(Op("Pow", 2), {I64({2, -3, 2, -1}, {4}), I64({10, 3, -1, -3}, {4})})),
            (std::vector<int64_t>{1024, -27, 0, -1}));
  EXPECT_EQ(Values<int32_t>(Run1(Op("Pow", 2), {I32({2, 4}, {2}), F({0.5f, 0.5f}, {2})})), (std::vector<int32_t>{1, 2}));
}

TEST(ElementwiseBinary, MinMaxPropagateNaNAndAreVariadic) {
  ExpectFloats(Run1(Op("Max", 2), {F({1, kNaN, 3}, {3}), F({2, 2, kNaN}, {3})}), {3}, {2, kNaN, kNaN});
  ExpectFloats(Run1(Op("Min", 2), {F({1, kNaN, 3}, {3}), F({2, 2, kNaN}, {3})}), {3}, {1, kNaN, kNaN});
  // Three inputs broadcast together: [2] , [2,1], scalar.
  ExpectFloats(Run1(Op("Max", 3), {F({1, 5}, {2}), F({3, 0}, {2, 1}), F({2}, {})}), {2, 2}, {3, 5, 2, 5});
  ExpectFloats(Run1(Op("Sum", 3), {F({1, 2}, {2}), F({10, 20}, {2, 1}), F({100}, {})}), {2, 2},
               {111, 112, 121, 122});
  ExpectFloats(Run1(Op("Mean", 3), {F({1, 2}, {2}), F({4, 5}, {2}), F({1, 2}, {2})}), {2}, {2, 3});
  ExpectFloats(Run1(Op("Sum", 1), {F({1, 2}, {2})}), {2}, {1, 2});
  EXPECT_EQ(Values<int64_t>(Run1(Op("Min", 2), {I64({1, -5}, {2}), I64({0}, {1})})), (std::vector<int64_t>{0, -5}));
}

TEST(ElementwiseBinary, ComparisonsAndLogic) {
  Tensor eq = Run1(Op("Equal", 2), {I64({1, 2, 3}, {3}), I64({2}, {})});
  EXPECT_EQ(eq.dtype(), DType::kBool);
  EXPECT_EQ(Values<uint8_t>(eq), (std::vector<uint8_t>{0, 1, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Equal", 2), {F({kNaN, 1}, {2}), F({kNaN, 1}, {2})})), (std::vector<uint8_t>{0, 1}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Equal", 2), {B({1, 0}, {2}), B({1, 1}, {2})})), (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Less", 2), {F({1, 2, 3}, {3}), F({2}, {1})})), (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("LessOrEqual", 2), {F({1, 2, 3}, {3}), F({2}, {1})})), (std::vector<uint8_t>{1, 1, 0}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Greater", 2), {I32({1, 2, 3}, {3}), I32({2}, {1})})), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("GreaterOrEqual", 2), {I32({1, 2, 3}, {3}), I32({2}, {1})})),
            (std::vector<uint8_t>{0, 1, 1}));
  const Tensor a = B({0, 0, 1, 1}, {4}), b = B({0, 1, 0, 1}, {4});
  EXPECT_EQ(Values<uint8_t>(Run1(Op("And", 2), {a, b})), (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Or", 2), {a, b})), (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Xor", 2), {a, b})), (std::vector<uint8_t>{0, 1, 1, 0}));
}

TEST(ElementwiseBinary, WhereAndPRelu) {
  // cond [2,1], X [1,3], Y scalar → [2,3].
  ExpectFloats(Run1(Op("Where", 3), {B({1, 0}, {2, 1}), F({1, 2, 3}, {1, 3}), F({-1}, {})}), {2, 3},
               {1, 2, 3, -1, -1, -1});
  EXPECT_EQ(Values<int64_t>(Run1(Op("Where", 3), {B({1, 0}, {2}), I64({5, 6}, {2}), I64({7, 8}, {2})})),
            (std::vector<int64_t>{5, 8}));
  // Slope [2,1,1] per channel of X [1,2,2,1]... here X [2,2] with slope [2,1].
  ExpectFloats(Run1(Op("PRelu", 2), {F({-1, 2, -3, 4}, {2, 2}), F({0.5f, 0.25f}, {2, 1})}), {2, 2},
               {-0.5f, 2, -0.75f, 4});
}

TEST(ElementwiseBinary, ErrorsAreValues) {
  Status s = RunStatus(Op("Add", 2), {F({1, 2, 3, 4, 5, 6}, {2, 3}), F({1, 2, 3, 4}, {4})});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("Add_test"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("broadcast"), std::string::npos) << s.message();
  EXPECT_FALSE(RunStatus(Op("Add", 2), {F({1}, {1}), I32({1}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("And", 2), {F({1}, {1}), F({1}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("Sigmoid", 1), {I32({1}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("Where", 3), {F({1}, {1}), F({1}, {1}), F({1}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("Add", 1), {F({1}, {1})}).ok());
  // PRelu's slope must broadcast to X, not grow it.
  EXPECT_FALSE(RunStatus(Op("PRelu", 2), {F({1, 2}, {2}), F({1, 2, 3, 4}, {2, 2})}).ok());
  // Ops the CPU has no kernel for at all are Unsupported by the backend, not a crash.
  EXPECT_EQ(RunStatus(Op("BitShift", 2), {U8({1}, {1}), U8({1}, {1})}).code(), StatusCode::kUnsupported);
}

// f16 math runs through f32 kernels (f16_adapter.h): values round-trip exactly here.
TEST(ElementwiseBinary, HalfInputsComputeInFloat) {
  Node to_f16 = Op("Cast", 1);
  to_f16.attrs.SetInt("to", 10);
  Node to_f32 = Op("Cast", 1);
  to_f32.attrs.SetInt("to", 1);
  const Tensor a = Run1(to_f16, {F({1.5f, -2, kNaN}, {3})}), b = Run1(to_f16, {F({0.25f}, {1})});
  Tensor sum = Run1(Op("Add", 2), {a, b});
  ASSERT_EQ(sum.dtype(), DType::kF16);
  ExpectFloats(Run1(to_f32, {sum}), {3}, {1.75f, -1.75f, kNaN});
  ExpectFloats(Run1(to_f32, {Run1(Op("Max", 2), {a, b})}), {3}, {1.5f, 0.25f, kNaN});
  EXPECT_EQ(Values<uint8_t>(Run1(Op("Less", 2), {a, b})), (std::vector<uint8_t>{0, 1, 0}));
  ExpectFloats(Run1(to_f32, {Run1(Op("Relu", 1), {a})}), {3}, {1.5f, 0, kNaN});
}

// ---- fast paths against a naive reference ---------------------------------

// out[i] = a[bcast(i)] + 2*b[bcast(i)] with explicit index math.
std::vector<float> NaiveBroadcast(const Tensor& a, const Tensor& b, const Shape& out) {
  std::vector<float> r(static_cast<size_t>(ElementCount(out)));
  const auto sa = ContiguousStrides(a.shape()), sb = ContiguousStrides(b.shape());
  for (int64_t i = 0; i < static_cast<int64_t>(r.size()); ++i) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
      const int64_t idx = rem % out[static_cast<size_t>(d)];
      rem /= out[static_cast<size_t>(d)];
      const int da = d - static_cast<int>(out.size() - a.shape().size());
      const int db = d - static_cast<int>(out.size() - b.shape().size());
      if (da >= 0 && a.shape()[static_cast<size_t>(da)] != 1) oa += idx * sa[static_cast<size_t>(da)];
      if (db >= 0 && b.shape()[static_cast<size_t>(db)] != 1) ob += idx * sb[static_cast<size_t>(db)];
    }
    r[static_cast<size_t>(i)] = a.data<float>()[oa] - 2 * b.data<float>()[ob];
  }
  return r;
}

Tensor Random(const Shape& s, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-10, 10);
  std::vector<float> v(static_cast<size_t>(ElementCount(s)));
  for (float& x : v) x = u(rng);
  return F(v, s);
}

TEST(ElementwiseBinary, FastPathsMatchNaiveBroadcasting) {
  std::mt19937 rng(7);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 17, 19, 23}, {2, 3, 17, 19, 23}},  // same shape, split over threads
      {{2, 3, 17, 19, 23}, {}},                  // scalar
      {{2, 3, 17, 19, 23}, {1, 3, 1, 1, 1}},     // per channel
      {{1, 3, 1, 1, 1}, {2, 3, 17, 19, 23}},     // per channel, other side
      {{2, 3, 17, 19, 23}, {23}},                // trailing vector
      {{2, 3, 17, 19, 1}, {1, 1, 1, 1, 23}},     // outer product
      {{2, 1, 17, 1, 23}, {1, 3, 1, 19, 1}},     // interleaved
      {{4000, 1}, {1, 40}},
      {{1}, {70001}},
  };
  for (const auto& [sa, sb] : cases) {
    const Tensor a = Random(sa, rng), b = Random(sb, rng);
    Node n = Op("Sub", 2);
    // a - 2b through two kernels: Mul then Sub, compared with the naive loop.
    Tensor twice = Run1(Op("Mul", 2), {b, F({2}, {})});
    Tensor got = Run1(n, {a, twice});
    auto out = BroadcastShapes(sa, sb);
    ASSERT_TRUE(out.ok());
    ASSERT_EQ(got.shape(), *out);
    const std::vector<float> want = NaiveBroadcast(a, b, *out);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_FLOAT_EQ(got.data<float>()[i], want[i]) << ShapeToString(sa) << " vs " << ShapeToString(sb) << " at " << i;
  }
}

}  // namespace
}  // namespace itkit
