// Tensor-op family: hand-derived values for layout ops (Reshape 0/-1, negative-step
// Slice with INT64 clamping, reflect/edge/negative Pad, Gather with negative
// indices, ScatterND (ONNX's examples)...), the tiled Transpose against index math, and errors.
#include <gtest/gtest.h>

#include <limits>
#include <numeric>
#include <random>

#include "op_test_util.h"

namespace itkit {
namespace {

using test::MakeNode;
using test::RunNode;

constexpr int64_t kMax64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin64 = std::numeric_limits<int64_t>::min();

template <typename T>
Tensor T_(std::vector<T> v, Shape s) {
  auto t = Tensor::FromVector<T>(v, std::move(s));
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}
Tensor F(std::vector<float> v, Shape s) { return T_<float>(std::move(v), std::move(s)); }
Tensor I64(std::vector<int64_t> v, Shape s) { return T_<int64_t>(std::move(v), std::move(s)); }
Tensor I32(std::vector<int32_t> v, Shape s) { return T_<int32_t>(std::move(v), std::move(s)); }
Tensor Ints(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return I64(std::move(v), {n});
}
// 0, 1, 2, ... as float.
Tensor Iota(Shape s) {
  std::vector<float> v(static_cast<size_t>(ElementCount(s)));
  std::iota(v.begin(), v.end(), 0.0f);
  return F(v, std::move(s));
}

Node Op(const std::string& type, size_t num_inputs, size_t num_outputs = 1) {
  std::vector<std::string> in, out;
  for (size_t i = 0; i < num_inputs; ++i) in.push_back(std::string(1, static_cast<char>('a' + i)));
  for (size_t i = 0; i < num_outputs; ++i) out.push_back("y" + std::to_string(i));
  return MakeNode(type, in, out);
}
Tensor Run1(const Node& node, std::vector<Tensor> inputs, int64_t opset = 17, size_t i = 0) {
  auto out = RunNode(node, inputs, opset);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return Tensor();
  return (*out)[i];
}
Status RunStatus(const Node& node, std::vector<Tensor> inputs, int64_t opset = 17) {
  return RunNode(node, inputs, opset).status();
}
template <typename T>
std::vector<T> Values(const Tensor& t) {
  if (!t.defined()) return {};
  return std::vector<T>(t.data<T>(), t.data<T>() + t.size());
}
using Fv = std::vector<float>;
using Iv = std::vector<int64_t>;

TEST(TensorOps, ReshapeZeroCopiesAndMinusOneInfers) {
  Tensor y = Run1(Op("Reshape", 2), {Iota({2, 3, 4}), Ints({0, -1})});
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(Values<float>(y)[13], 13.0f);
  EXPECT_EQ(Run1(Op("Reshape", 2), {Iota({2, 3, 4}), Ints({-1, 3, 2})}).shape(), (Shape{4, 3, 2}));
  // allowzero: 0 is a real zero dim.
  Node az = Op("Reshape", 2);
  az.attrs.SetInt("allowzero", 1);
  EXPECT_EQ(Run1(az, {F({}, {0, 3}), Ints({3, 0})}).shape(), (Shape{3, 0}));
  EXPECT_FALSE(RunStatus(Op("Reshape", 2), {Iota({2, 3}), Ints({-1, -1})}).ok());
  EXPECT_FALSE(RunStatus(Op("Reshape", 2), {Iota({2, 3}), Ints({4, 2})}).ok());
  EXPECT_FALSE(RunStatus(Op("Reshape", 2), {Iota({2, 3}), Ints({5, -1})}).ok());
}

TEST(TensorOps, FlattenSqueezeUnsqueeze) {
  Node f0 = Op("Flatten", 1);
  f0.attrs.SetInt("axis", 0);
  EXPECT_EQ(Run1(f0, {Iota({2, 3, 4})}).shape(), (Shape{1, 24}));
  Node fm = Op("Flatten", 1);
  fm.attrs.SetInt("axis", -1);
  EXPECT_EQ(Run1(fm, {Iota({2, 3, 4})}).shape(), (Shape{6, 4}));
  EXPECT_EQ(Run1(Op("Flatten", 1), {Iota({2, 3, 4})}).shape(), (Shape{2, 12}));
  // Squeeze: axes input (opset 13), attribute (opset 11), or all size-1 dims.
  EXPECT_EQ(Run1(Op("Squeeze", 2), {Iota({1, 3, 1, 2}), Ints({-2})}).shape(), (Shape{1, 3, 2}));
  Node sq11 = Op("Squeeze", 1);
  sq11.attrs.SetInts("axes", {0});
  EXPECT_EQ(Run1(sq11, {Iota({1, 3, 1, 2})}, 11).shape(), (Shape{3, 1, 2}));
  EXPECT_EQ(Run1(Op("Squeeze", 1), {Iota({1, 3, 1, 2})}).shape(), (Shape{3, 2}));
  EXPECT_FALSE(RunStatus(Op("Squeeze", 2), {Iota({1, 3}), Ints({1})}).ok());
  // Unsqueeze: axes refer to the output; unsorted and negative allowed.
  EXPECT_EQ(Run1(Op("Unsqueeze", 2), {Iota({3, 4}), Ints({2, 0})}).shape(), (Shape{1, 3, 1, 4}));
  EXPECT_EQ(Run1(Op("Unsqueeze", 2), {Iota({3, 4}), Ints({-1})}).shape(), (Shape{3, 4, 1}));
  EXPECT_FALSE(RunStatus(Op("Unsqueeze", 2), {Iota({3}), Ints({0, 0})}).ok());
  EXPECT_FALSE(RunStatus(Op("Unsqueeze", 2), {Iota({3}), Ints({3})}).ok());
}

TEST(TensorOps, TransposeSmall) {
  Tensor y = Run1(Op("Transpose", 1), {Iota({2, 3})});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values<float>(y), (Fv{0, 3, 1, 4, 2, 5}));
  Node p = Op("Transpose", 1);
  p.attrs.SetInts("perm", {1, 2, 0});
  Tensor z = Run1(p, {Iota({2, 2, 3})});
  EXPECT_EQ(z.shape(), (Shape{2, 3, 2}));
  // z[i,j,k] = x[k,i,j] = 6k + 3i + j
  EXPECT_EQ(Values<float>(z), (Fv{0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11}));
  Node bad = Op("Transpose", 1);
  bad.attrs.SetInts("perm", {0, 0});
  EXPECT_FALSE(RunStatus(bad, {Iota({2, 2})}).ok());
}

// 5-D permutations (tiled and strided paths) against index math, for 4- and 1-byte
// elements.
TEST(TensorOps, TransposePermutationsMatchIndexMath) {
  const Shape in{2, 5, 7, 9, 37};
  const std::vector<std::vector<int64_t>> perms = {
      {0, 2, 3, 4, 1}, {0, 4, 1, 2, 3}, {4, 3, 2, 1, 0}, {0, 1, 2, 4, 3}, {1, 0, 2, 3, 4}, {2, 0, 4, 1, 3}};
  const Tensor x = Iota(in);
  const auto strides = ContiguousStrides(in);
  for (const auto& perm : perms) {
    Node n = Op("Transpose", 1);
    n.attrs.SetInts("perm", perm);
    Tensor y = Run1(n, {x});
    Shape out(5);
    for (size_t i = 0; i < 5; ++i) out[i] = in[static_cast<size_t>(perm[i])];
    ASSERT_EQ(y.shape(), out);
    const auto ostr = ContiguousStrides(out);
    for (int64_t i = 0; i < y.size(); ++i) {
      int64_t src = 0;
      for (size_t d = 0; d < 5; ++d) src += (i / ostr[d]) % out[d] * strides[static_cast<size_t>(perm[d])];
      ASSERT_EQ(y.data<float>()[i], static_cast<float>(src)) << "perm " << ShapeToString(perm) << " at " << i;
    }
  }
  // bool data through the tiled path.
  auto b = Tensor::Allocate(DType::kBool, {3, 40, 33});
  ASSERT_TRUE(b.ok());
  for (int64_t i = 0; i < b->size(); ++i) b->data<uint8_t>()[i] = static_cast<uint8_t>(i % 3 == 0);
  Node n = Op("Transpose", 1);
  n.attrs.SetInts("perm", {0, 2, 1});
  Tensor y = Run1(n, {*b});
  ASSERT_EQ(y.dtype(), DType::kBool);
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t i = 0; i < 33; ++i)
      for (int64_t j = 0; j < 40; ++j)
        ASSERT_EQ(y.data<uint8_t>()[(k * 33 + i) * 40 + j], b->data<uint8_t>()[(k * 40 + j) * 33 + i]);
}

TEST(TensorOps, ConcatAndSplit) {
  Node c = Op("Concat", 2);
  c.attrs.SetInt("axis", 1);
  Tensor y = Run1(c, {F({1, 2}, {2, 1}), F({3, 4, 5, 6}, {2, 2})});
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values<float>(y), (Fv{1, 3, 4, 2, 5, 6}));
  Node cn = Op("Concat", 3);
  cn.attrs.SetInt("axis", -1);
  EXPECT_EQ(Values<int64_t>(Run1(cn, {Ints({1}), Ints({}), Ints({2, 3})})), (Iv{1, 2, 3}));
  Node bad = Op("Concat", 2);
  bad.attrs.SetInt("axis", 1);
  EXPECT_FALSE(RunStatus(bad, {F({1, 2}, {2, 1}), F({3, 4, 5}, {3, 1})}).ok());

  // Split sizes from the input (opset 13) on axis 1.
  Node s = Op("Split", 2, 2);
  s.attrs.SetInt("axis", 1);
  auto parts = RunNode(s, {Iota({2, 3}), Ints({1, 2})});
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  EXPECT_EQ(Values<float>((*parts)[0]), (Fv{0, 3}));
  EXPECT_EQ(Values<float>((*parts)[1]), (Fv{1, 2, 4, 5}));
  // Equal split by the number of outputs; opset 11 'split' attribute.
  auto eq = RunNode(Op("Split", 1, 3), {Iota({6})});
  ASSERT_TRUE(eq.ok());
  EXPECT_EQ(Values<float>((*eq)[2]), (Fv{4, 5}));
  Node s11 = Op("Split", 1, 2);
  s11.attrs.SetInts("split", {4, 2});
  auto p11 = RunNode(s11, {Iota({6})}, 11);
  ASSERT_TRUE(p11.ok());
  EXPECT_EQ(Values<float>((*p11)[0]), (Fv{0, 1, 2, 3}));
  EXPECT_FALSE(RunStatus(Op("Split", 1, 4), {Iota({6})}, 13).ok());
  EXPECT_FALSE(RunStatus(Op("Split", 2, 2), {Iota({6}), Ints({1, 2})}).ok());
}

TEST(TensorOps, SliceClampsAndSteps) {
  const Tensor x = Iota({10});
  // Reverse everything: start -1, end INT64_MIN, step -1.
  EXPECT_EQ(Values<float>(Run1(Op("Slice", 5), {x, Ints({-1}), Ints({kMin64}), Ints({0}), Ints({-1})})),
            (Fv{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(Values<float>(Run1(Op("Slice", 5), {x, Ints({8}), Ints({1}), Ints({0}), Ints({-3})})), (Fv{8, 5, 2}));
  EXPECT_EQ(Values<float>(Run1(Op("Slice", 3), {x, Ints({7}), Ints({kMax64})})), (Fv{7, 8, 9}));
  EXPECT_EQ(Values<float>(Run1(Op("Slice", 5), {x, Ints({1}), Ints({1000}), Ints({0}), Ints({4})})), (Fv{1, 5, 9}));
  EXPECT_EQ(Run1(Op("Slice", 3), {x, Ints({5}), Ints({2})}).shape(), (Shape{0}));
  EXPECT_EQ(Run1(Op("Slice", 5), {x, Ints({20}), Ints({-20}), Ints({0}), Ints({-1})}).size(), 10);
  // 2-D with axes given as negative and out of order: x[1:3, ::-2] of a 3x4.
  Tensor y = Run1(Op("Slice", 5), {Iota({3, 4}), Ints({-1, 1}), Ints({kMin64, 3}), Ints({-1, 0}), Ints({-2, 1})});
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(Values<float>(y), (Fv{7, 5, 11, 9}));
  // Opset 1..9: attributes.
  Node old = Op("Slice", 1);
  old.attrs.SetInts("starts", {1});
  old.attrs.SetInts("ends", {-1});
  EXPECT_EQ(Values<float>(Run1(old, {Iota({5})}, 9)), (Fv{1, 2, 3}));
  EXPECT_FALSE(RunStatus(Op("Slice", 5), {x, Ints({0}), Ints({5}), Ints({0}), Ints({0})}).ok());
  EXPECT_FALSE(RunStatus(Op("Slice", 4), {x, Ints({0}), Ints({5}), Ints({1})}).ok());
}

TEST(TensorOps, ExpandAndTile) {
  // [3,1] expanded by [2,1,6] → [2,3,6] (bidirectional).
  Tensor y = Run1(Op("Expand", 2), {F({1, 2, 3}, {3, 1}), Ints({2, 1, 6})});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 6}));
  EXPECT_EQ(Values<float>(y)[6 * 1 + 5], 2.0f);
  EXPECT_EQ(Values<float>(y)[18 + 12], 3.0f);
  EXPECT_EQ(Run1(Op("Expand", 2), {Iota({2, 3}), Ints({3})}).shape(), (Shape{2, 3}));
  EXPECT_FALSE(RunStatus(Op("Expand", 2), {Iota({2, 3}), Ints({4})}).ok());
  Tensor t = Run1(Op("Tile", 2), {F({1, 2, 3, 4}, {2, 2}), Ints({2, 2})});
  EXPECT_EQ(t.shape(), (Shape{4, 4}));
  EXPECT_EQ(Values<float>(t), (Fv{1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4}));
  EXPECT_EQ(Values<float>(Run1(Op("Tile", 2), {F({1, 2}, {2}), Ints({0})})), (Fv{}));
  EXPECT_FALSE(RunStatus(Op("Tile", 2), {F({1, 2}, {2}), Ints({1, 1})}).ok());
}

TEST(TensorOps, PadModes) {
  const Tensor x = F({1, 2, 3}, {3});
  EXPECT_EQ(Values<float>(Run1(Op("Pad", 3), {x, Ints({2, 1}), F({9}, {})})), (Fv{9, 9, 1, 2, 3, 9}));
  EXPECT_EQ(Values<float>(Run1(Op("Pad", 2), {x, Ints({1, 0})})), (Fv{0, 1, 2, 3}));
  Node reflect = Op("Pad", 2);
  reflect.attrs.SetString("mode", "reflect");
  EXPECT_EQ(Values<float>(Run1(reflect, {x, Ints({2, 2})})), (Fv{3, 2, 1, 2, 3, 2, 1}));
  // Wider than the input: mirrored again (numpy's np.pad([1,2], (3,0), 'reflect')).
  EXPECT_EQ(Values<float>(Run1(reflect, {F({1, 2}, {2}), Ints({3, 0})})), (Fv{2, 1, 2, 1, 2}));
  Node edge = Op("Pad", 2);
  edge.attrs.SetString("mode", "edge");
  EXPECT_EQ(Values<float>(Run1(edge, {x, Ints({2, 2})})), (Fv{1, 1, 1, 2, 3, 3, 3}));
  // Negative pads crop.
  EXPECT_EQ(Values<float>(Run1(Op("Pad", 2), {F({1, 2, 3, 4}, {4}), Ints({-1, 1})})), (Fv{2, 3, 4, 0}));
  // 2-D reflect: pads [top, left, bottom, right] = [1, 0, 0, 1] on [[0,1],[2,3]].
  Tensor y = Run1(reflect, {Iota({2, 2}), Ints({1, 0, 0, 1})});
  EXPECT_EQ(y.shape(), (Shape{3, 3}));
  EXPECT_EQ(Values<float>(y), (Fv{2, 3, 2, 0, 1, 0, 2, 3, 2}));
  // Opset 2 attributes.
  Node old = Op("Pad", 1);
  old.attrs.SetInts("pads", {1, 1});
  old.attrs.SetFloat("value", 5.0f);
  EXPECT_EQ(Values<float>(Run1(old, {x}, 2)), (Fv{5, 1, 2, 3, 5}));
  EXPECT_EQ(Values<int32_t>(Run1(Op("Pad", 3), {I32({7}, {1}), Ints({1, 1}), I32({-1}, {})})),
            (std::vector<int32_t>{-1, 7, -1}));
  EXPECT_FALSE(RunStatus(Op("Pad", 2), {x, Ints({-2, -2})}).ok());
  EXPECT_FALSE(RunStatus(Op("Pad", 2), {x, Ints({1})}).ok());
  Node wrap = Op("Pad", 2);
  wrap.attrs.SetString("mode", "wrap");
  EXPECT_EQ(RunStatus(wrap, {x, Ints({1, 1})}).code(), StatusCode::kUnsupported);
}

TEST(TensorOps, GatherAxesAndNegativeIndices) {
  const Tensor x = Iota({3, 2});
  Tensor y = Run1(Op("Gather", 2), {x, I64({2, -3, 1}, {3})});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(Values<float>(y), (Fv{4, 5, 0, 1, 2, 3}));
  Node g1 = Op("Gather", 2);
  g1.attrs.SetInt("axis", 1);
  Tensor z = Run1(g1, {x, I32({-1, 0, 1, 1}, {2, 2})});
  EXPECT_EQ(z.shape(), (Shape{3, 2, 2}));
  EXPECT_EQ(Values<float>(z), (Fv{1, 0, 1, 1, 3, 2, 3, 3, 5, 4, 5, 5}));
  // Scalar index drops the axis.
  EXPECT_EQ(Run1(g1, {x, I64({0}, {})}).shape(), (Shape{3}));
  EXPECT_FALSE(RunStatus(Op("Gather", 2), {x, I64({3}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("Gather", 2), {x, I64({-4}, {1})}).ok());
}

// ONNX's ScatterND examples (1: single elements, 2: whole 4x4 slices), full-rank tuples
// with a negative index, the reductions with a repeated index, and errors.
TEST(TensorOps, ScatterND) {
  Tensor y = Run1(Op("ScatterND", 3), {F({1, 2, 3, 4, 5, 6, 7, 8}, {8}), I64({4, 3, 1, 7}, {4, 1}),
                                       F({9, 10, 11, 12}, {4})});
  EXPECT_EQ(Values<float>(y), (Fv{1, 11, 3, 10, 9, 6, 7, 12}));

  std::vector<float> slices;
  for (float v : {5, 6, 7, 8, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1}) slices.push_back(v);
  for (int i = 0; i < 16; ++i) slices.push_back(1.0f);
  Tensor y2 = Run1(Op("ScatterND", 3), {Iota({4, 4, 4}), I64({0, 2}, {2, 1}), F(slices, {2, 4, 4})});
  const std::vector<float> v2 = Values<float>(y2);
  ASSERT_EQ(v2.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    const float want = i < 16 ? slices[static_cast<size_t>(i)] : i >= 32 && i < 48 ? 1.0f : static_cast<float>(i);
    EXPECT_EQ(v2[static_cast<size_t>(i)], want) << i;
  }

  // k = rank: one element per tuple; -1 is the last row. int64 data, int32 indices.
  EXPECT_EQ(Values<int64_t>(Run1(Op("ScatterND", 3), {I64({0, 1, 2, 3, 4, 5}, {2, 3}), I32({-1, 2, 0, 0}, {2, 2}),
                                                       I64({7, 8}, {2})})),
            (Iv{8, 1, 2, 3, 4, 7}));

  // Reductions apply every tuple in order, so repeated indices accumulate.
  const Tensor data = F({1, 2, 3, 4}, {4}), idx = I64({1, 1, -1}, {3, 1}), upd = F({10, 20, 30}, {3});
  auto reduce = [&](const char* r) {
    Node n = Op("ScatterND", 3);
    n.attrs.SetString("reduction", r);
    return Values<float>(Run1(n, {data, idx, upd}));
  };
  EXPECT_EQ(reduce("add"), (Fv{1, 32, 3, 34}));
  EXPECT_EQ(reduce("mul"), (Fv{1, 400, 3, 120}));
  EXPECT_EQ(reduce("max"), (Fv{1, 20, 3, 30}));
  EXPECT_EQ(reduce("min"), (Fv{1, 2, 3, 4}));

  EXPECT_FALSE(RunStatus(Op("ScatterND", 3), {data, I64({4}, {1, 1}), F({0}, {1})}).ok());   // out of range
  EXPECT_FALSE(RunStatus(Op("ScatterND", 3), {data, I64({-5}, {1, 1}), F({0}, {1})}).ok());
  EXPECT_FALSE(RunStatus(Op("ScatterND", 3), {data, I64({1}, {1, 1}), F({0, 0}, {2})}).ok());  // updates' shape
  EXPECT_FALSE(RunStatus(Op("ScatterND", 3), {data, I64({1, 1}, {1, 2}), F({0}, {1})}).ok());  // k > rank
  Node bad = Op("ScatterND", 3);
  bad.attrs.SetString("reduction", "sub");
  EXPECT_EQ(RunStatus(bad, {data, idx, upd}).code(), StatusCode::kUnsupported);
}

// Indices only known at run time: the kernel checks the range itself.
TEST(TensorOps, ScatterNDChecksRuntimeIndices) {
  Node n = Op("ScatterND", 3);
  const Tensor data = F({1, 2, 3}, {3}), upd = F({9}, {1});
  ValueDesc dd{DType::kF32, {3}, &data}, id{DType::kI64, {1, 1}, nullptr}, ud{DType::kF32, {1}, &upd};
  ShapeContext sctx(n, {&dd, &id, &ud}, 17);
  ASSERT_TRUE(InferNodeShapes(sctx).ok());
  NodeSignature sig{&n, {dd, id, ud}, sctx.outputs(), 17};
  auto kernel = CreateCpuBackend()->CreateKernel(sig);
  ASSERT_TRUE(kernel.ok()) << kernel.status().ToString();
  for (int64_t i : {-3, 2, 3}) {
    const Tensor idx = I64({i}, {1, 1});
    Tensor out = F({0, 0, 0}, {3});
    KernelContext ctx;
    ctx.inputs = {&data, &idx, &upd};
    ctx.outputs = {&out};
    Status s = (*kernel)->Run(ctx);
    if (i == 3) {
      EXPECT_FALSE(s.ok());
    } else {
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(Values<float>(out), i == 2 ? (Fv{1, 2, 9}) : (Fv{9, 2, 3}));
    }
  }
}

TEST(TensorOps, ShapeSizeAndGenerators) {
  const Tensor x = Iota({2, 3, 4});
  EXPECT_EQ(Values<int64_t>(Run1(Op("Shape", 1), {x})), (Iv{2, 3, 4}));
  Node sh = Op("Shape", 1);
  sh.attrs.SetInt("start", 1);
  sh.attrs.SetInt("end", -1);
  EXPECT_EQ(Values<int64_t>(Run1(sh, {x})), (Iv{3}));
  Node clip = Op("Shape", 1);
  clip.attrs.SetInt("start", -10);
  clip.attrs.SetInt("end", 10);
  EXPECT_EQ(Values<int64_t>(Run1(clip, {x})), (Iv{2, 3, 4}));
  Tensor size = Run1(Op("Size", 1), {x});
  EXPECT_EQ(size.shape(), Shape{});
  EXPECT_EQ(Values<int64_t>(size), (Iv{24}));

  Node cos = Op("ConstantOfShape", 1);
  Attribute v;
  v.kind = Attribute::Kind::kTensor;
  v.t = I64({7}, {1});
  cos.attrs.Set("value", v);
  Tensor c = Run1(cos, {Ints({2, 2})});
  EXPECT_EQ(c.dtype(), DType::kI64);
  EXPECT_EQ(Values<int64_t>(c), (Iv{7, 7, 7, 7}));
  EXPECT_EQ(Values<float>(Run1(Op("ConstantOfShape", 1), {Ints({3})})), (Fv{0, 0, 0}));

  EXPECT_EQ(Values<float>(Run1(Op("Range", 3), {F({1}, {}), F({5}, {}), F({2}, {})})), (Fv{1, 3}));
  EXPECT_EQ(Values<int32_t>(Run1(Op("Range", 3), {I32({10}, {}), I32({6}, {}), I32({-3}, {})})),
            (std::vector<int32_t>{10, 7}));
  EXPECT_EQ(Run1(Op("Range", 3), {I64({5}, {}), I64({1}, {}), I64({1}, {})}).shape(), (Shape{0}));
  EXPECT_FALSE(RunStatus(Op("Range", 3), {I64({5}, {}), I64({1}, {}), I64({0}, {})}).ok());

  Tensor nz = Run1(Op("NonZero", 1), {F({1, 0, 0, 2, 3, 0}, {2, 3})});
  EXPECT_EQ(nz.shape(), (Shape{2, 3}));
  EXPECT_EQ(Values<int64_t>(nz), (Iv{0, 1, 1, 0, 0, 1}));

  Node k = MakeNode("Constant", {}, {"y"});
  Attribute kv;
  kv.kind = Attribute::Kind::kTensor;
  kv.t = F({1.5f, 2.5f}, {2});
  k.attrs.Set("value", kv);
  EXPECT_EQ(Values<float>(Run1(k, {})), (Fv{1.5f, 2.5f}));
  Node ki = MakeNode("Constant", {}, {"y"});
  ki.attrs.SetInts("value_ints", {4, 5});
  EXPECT_EQ(Values<int64_t>(Run1(ki, {})), (Iv{4, 5}));
}

// Shape-valued inputs that are not constant at planning time are reported, not guessed.
TEST(TensorOps, NonConstantShapeInputIsReported) {
  Node n = Op("Reshape", 2);
  ValueDesc data{DType::kF32, {2, 3}, nullptr};
  ValueDesc shape{DType::kI64, {2}, nullptr};
  ShapeContext ctx(n, {&data, &shape}, 17);
  Status s = InferNodeShapes(ctx);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("Reshape_test"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace itkit
