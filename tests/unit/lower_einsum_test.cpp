// lower_einsum on hand-built graphs: which equations become Transpose/MatMul (with which
// perms) and which stay Einsum, hand-computed values of small products, and lowered
// graphs against the same graphs with the pass disabled (the Einsum kernel). PyTorch's
// reference: the zoo's UNETR (fusion_zoo_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "itkit/passes.h"
#include "itkit/session.h"
#include "graph_test_util.h"
#include "passes/static_info.h"

namespace itkit {
namespace {

using test::Random;
using test::RelativeError;
using test::RunModel;

const std::vector<std::string> kNoLowering = {"lower_einsum"};

// Einsum(a, b) -> y with the given input dims.
Model EinsumModel(const std::string& equation, std::vector<Dim> a, std::vector<Dim> b) {
  test::GraphBuilder g;
  g.Input("a", std::move(a));
  g.Input("b", std::move(b));
  g.Add("Einsum", {"a", "b"}, "y").attrs.SetString("equation", equation);
  g.Output("y");
  return g.m;
}

Model EinsumModel(const std::string& equation, const Shape& a, const Shape& b) {
  return EinsumModel(equation, test::Dims(a), test::Dims(b));
}

Dim Symbol(const std::string& name) { return Dim{-1, name}; }

std::unique_ptr<Session> Create(const Model& model, std::vector<std::string> disabled = {}) {
  SessionOptions o;
  o.disabled_passes = std::move(disabled);
  auto s = Session::Create(model, o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::vector<std::string> OpTypes(const Session& s) {
  std::vector<std::string> ops;
  for (const Node& n : s.model().graph.nodes) ops.push_back(n.op_type);
  return ops;
}

bool Applied(const Session& s) {
  const auto& a = s.applied_passes();
  return std::find(a.begin(), a.end(), "lower_einsum") != a.end();
}

bool Lowered(const Model& model) {
  auto s = Create(model);
  if (!s) return false;
  const std::vector<std::string> ops = OpTypes(*s);
  return Applied(*s) && std::find(ops.begin(), ops.end(), "Einsum") == ops.end();
}

// ---- structure ------------------------------------------------------------------------

TEST(LowerEinsum, AttentionScoresTransposeKOnly) {
  auto s = Create(EinsumModel("blxd,blyd->blxy", Shape{2, 3, 4, 5}, Shape{2, 3, 6, 5}));
  ASSERT_TRUE(s);
  EXPECT_TRUE(Applied(*s));
  const auto& nodes = s->model().graph.nodes;
  ASSERT_EQ(OpTypes(*s), (std::vector<std::string>{"Transpose", "MatMul"}));
  EXPECT_EQ(nodes[0].inputs, (std::vector<std::string>{"b"}));
  EXPECT_EQ(nodes[0].attrs.GetInts("perm"), (std::vector<int64_t>{0, 1, 3, 2}));
  EXPECT_EQ(nodes[1].inputs, (std::vector<std::string>{"a", nodes[0].outputs[0]}));
  EXPECT_EQ(nodes[1].outputs, (std::vector<std::string>{"y"}));
  // Derived names keep the Einsum's name, for error messages.
  EXPECT_EQ(nodes[0].name, "y_node_rhs_transpose");
  EXPECT_EQ(nodes[1].name, "y_node_matmul");
}

TEST(LowerEinsum, AttentionValuesIsAPlainMatMul) {
  auto s = Create(EinsumModel("blxy,blyd->blxd", Shape{2, 3, 4, 6}, Shape{2, 3, 6, 5}));
  ASSERT_TRUE(s);
  ASSERT_EQ(OpTypes(*s), (std::vector<std::string>{"MatMul"}));
  const Node& mm = s->model().graph.nodes[0];
  EXPECT_EQ(mm.inputs, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(mm.outputs, (std::vector<std::string>{"y"}));
}

TEST(LowerEinsum, BatchLabelsInOutputOrder) {
  // [b,h,x,d] -> [h,b,x,d]; [b,h,y,d] -> [h,b,d,y]; the product is already [h,b,x,y].
  auto s = Create(EinsumModel("bhxd,bhyd->hbxy", Shape{2, 3, 4, 5}, Shape{2, 3, 6, 5}));
  ASSERT_TRUE(s);
  const auto& nodes = s->model().graph.nodes;
  ASSERT_EQ(OpTypes(*s), (std::vector<std::string>{"Transpose", "Transpose", "MatMul"}));
  EXPECT_EQ(nodes[0].inputs[0], "a");
  EXPECT_EQ(nodes[0].attrs.GetInts("perm"), (std::vector<int64_t>{1, 0, 2, 3}));
  EXPECT_EQ(nodes[1].inputs[0], "b");
  EXPECT_EQ(nodes[1].attrs.GetInts("perm"), (std::vector<int64_t>{1, 0, 3, 2}));
  EXPECT_EQ(nodes[2].inputs, (std::vector<std::string>{nodes[0].outputs[0], nodes[1].outputs[0]}));
  EXPECT_EQ(nodes[2].outputs[0], "y");
}

TEST(LowerEinsum, OutputTransposeKeepsTheOutputName) {
  // ki,kj->ji: A' = A^T, B as it is, Y = (A^T B)^T.
  auto s = Create(EinsumModel("ki,kj->ji", Shape{5, 4}, Shape{5, 6}));
  ASSERT_TRUE(s);
  const auto& nodes = s->model().graph.nodes;
  ASSERT_EQ(OpTypes(*s), (std::vector<std::string>{"Transpose", "MatMul", "Transpose"}));
  EXPECT_EQ(nodes[0].attrs.GetInts("perm"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(nodes[1].inputs, (std::vector<std::string>{nodes[0].outputs[0], "b"}));
  EXPECT_EQ(nodes[2].inputs, (std::vector<std::string>{nodes[1].outputs[0]}));
  EXPECT_EQ(nodes[2].attrs.GetInts("perm"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(nodes[2].outputs, (std::vector<std::string>{"y"}));
  EXPECT_EQ(nodes[2].name, "y_node_out_transpose");
}

TEST(LowerEinsum, FreshNamesDoNotCollide) {
  // The names the pass would pick first are taken by a graph input and a node output.
  test::GraphBuilder g;
  g.InputOfShape("a", {5, 4});
  g.InputOfShape("b", {5, 6});
  g.InputOfShape("y_lhs_transpose", {4, 6});
  g.Add("Einsum", {"a", "b"}, "y").attrs.SetString("equation", "ki,kj->ji");
  g.Add("Relu", {"y_lhs_transpose"}, "y_matmul");
  g.Output("y");
  g.Output("y_matmul");
  auto s = Create(g.m);
  ASSERT_TRUE(s);
  EXPECT_TRUE(Applied(*s));
  std::vector<std::string> outputs;
  for (const Node& n : s->model().graph.nodes) outputs.insert(outputs.end(), n.outputs.begin(), n.outputs.end());
  std::sort(outputs.begin(), outputs.end());
  EXPECT_EQ(std::adjacent_find(outputs.begin(), outputs.end()), outputs.end()) << "a value made twice";
  for (const std::string& v : outputs) EXPECT_NE(v, "y_lhs_transpose");
}

TEST(LowerEinsum, SpacesAndNoBatchLabel) {
  EXPECT_TRUE(Lowered(EinsumModel(" i k , k j -> i j ", Shape{4, 5}, Shape{5, 6})));
  EXPECT_TRUE(Lowered(EinsumModel("ik,kj->ij", Shape{4, 5}, Shape{5, 6})));
}

TEST(LowerEinsum, DeclinesWhatIsNotOneMatrixProduct) {
  const Shape m{4, 4}, t{4, 4, 4};
  EXPECT_FALSE(Lowered(EinsumModel("...ij,...jk->...ik", t, t))) << "ellipsis";
  EXPECT_FALSE(Lowered(EinsumModel("ii,ij->ij", m, m))) << "a label twice in one term";
  EXPECT_FALSE(Lowered(EinsumModel("ij,jk->iki", m, m))) << "a label twice in the output";
  EXPECT_FALSE(Lowered(EinsumModel("ijl,jk->ik", t, m))) << "l summed away from A alone";
  EXPECT_FALSE(Lowered(EinsumModel("ij,jkl->ik", m, t))) << "l summed away from B alone";
  EXPECT_FALSE(Lowered(EinsumModel("ijk,jkl->il", t, t))) << "two K labels";
  EXPECT_FALSE(Lowered(EinsumModel("ijk,jl->ikl", t, m))) << "two M labels";
  EXPECT_FALSE(Lowered(EinsumModel("ij,jk", m, m))) << "implicit output";
  EXPECT_FALSE(Lowered(EinsumModel("ij,ij->ij", m, m))) << "no K label (a product, no sum)";
  EXPECT_FALSE(Lowered(EinsumModel("ij,jk->ijk", m, m))) << "K kept in the output";
  test::GraphBuilder g;
  for (const char* in : {"a", "b", "c"}) g.InputOfShape(in, m);
  g.Add("Einsum", {"a", "b", "c"}, "y").attrs.SetString("equation", "ij,jk,kl->il");
  g.Output("y");
  EXPECT_FALSE(Lowered(g.m)) << "three inputs";
}

TEST(LowerEinsum, BatchDimsMustBeProvablyEqual) {
  const std::vector<Dim> n34 = {Symbol("N"), Dim{3, ""}, Dim{4, ""}};
  const std::vector<Dim> n45 = {Symbol("N"), Dim{4, ""}, Dim{5, ""}};
  const std::vector<Dim> m45 = {Symbol("M"), Dim{4, ""}, Dim{5, ""}};
  const std::vector<Dim> unknown45 = {Dim{}, Dim{4, ""}, Dim{5, ""}};
  EXPECT_TRUE(Lowered(EinsumModel("bij,bjk->bik", n34, n45))) << "the same named dim";
  EXPECT_FALSE(Lowered(EinsumModel("bij,bjk->bik", n34, m45))) << "different names";
  EXPECT_FALSE(Lowered(EinsumModel("bij,bjk->bik", n34, unknown45))) << "an anonymous dim";
  EXPECT_TRUE(Lowered(EinsumModel("bij,bjk->bik", Shape{2, 3, 4}, Shape{2, 4, 5}))) << "static, equal";
  // Einsum rejects 1 vs 2 where MatMul would broadcast.
  EXPECT_FALSE(Lowered(EinsumModel("bij,bjk->bik", Shape{1, 3, 4}, Shape{2, 4, 5}))) << "static, different";
  // No shape at all: nothing known about either operand.
  test::GraphBuilder g;
  g.m.graph.inputs.push_back(ValueInfo{"a", DType::kF32, false, {}});
  g.m.graph.inputs.push_back(ValueInfo{"b", DType::kF32, false, {}});
  g.Add("Einsum", {"a", "b"}, "y").attrs.SetString("equation", "bij,bjk->bik");
  g.Output("y");
  EXPECT_FALSE(Lowered(g.m)) << "no shapes";
  // Without batch labels there is nothing to prove.
  g.m.graph.nodes[0].attrs.SetString("equation", "ij,jk->ik");
  EXPECT_TRUE(Lowered(g.m));
}

TEST(LowerEinsum, DisabledByName) {
  auto s = Create(EinsumModel("blxd,blyd->blxy", Shape{2, 3, 4, 5}, Shape{2, 3, 6, 5}), kNoLowering);
  ASSERT_TRUE(s);
  EXPECT_FALSE(Applied(*s));
  EXPECT_EQ(OpTypes(*s), (std::vector<std::string>{"Einsum"}));
}

// torch's attention as exported from MONAI's UNETR: q, k, v gathered from one tensor of
// unknown shape (the Reshape target is computed from Shape ops), scores scaled,
// softmaxed and applied to v. The gathers prove the batch dims equal.
Model AttentionModel(bool k_from_another_tensor) {
  test::GraphBuilder g;
  g.m.graph.inputs.push_back(ValueInfo{"qkv", DType::kF32, false, {}});
  g.m.graph.inputs.push_back(ValueInfo{"other", DType::kF32, false, {}});
  for (int64_t i = 0; i < 3; ++i)
    g.m.graph.initializers["i" + std::to_string(i)] = Tensor::FromVector(std::vector<int64_t>{i}, Shape{}).value();
  g.m.graph.initializers["scale"] = Tensor::FromVector(std::vector<float>{0.5f}, Shape{}).value();
  g.Add("Gather", {"qkv", "i0"}, "q");
  g.Add("Gather", {k_from_another_tensor ? "other" : "qkv", "i1"}, "k");
  g.Add("Gather", {"qkv", "i2"}, "v");
  g.Add("Einsum", {"q", "k"}, "scores").attrs.SetString("equation", "blxd,blyd->blxy");
  g.Add("Mul", {"scores", "scale"}, "scaled");
  g.Add("Softmax", {"scaled"}, "att").attrs.SetInt("axis", -1);
  g.Add("Einsum", {"att", "v"}, "y").attrs.SetString("equation", "bhxy,bhyd->bhxd");
  g.Output("y");
  return g.m;
}

int CountEinsums(const Session& s) {
  const std::vector<std::string> ops = OpTypes(s);
  return static_cast<int>(std::count(ops.begin(), ops.end(), "Einsum"));
}

TEST(LowerEinsum, AttentionGatheredFromOneTensor) {
  auto s = Create(AttentionModel(false));
  ASSERT_TRUE(s);
  EXPECT_EQ(CountEinsums(*s), 0);
  // k from a tensor of another (unknown) shape: q k^T stays Einsum. Its output's batch
  // dims are q's wherever it runs (Einsum checks k's against them), and v has q's
  // shape, so att v is still lowered.
  auto other = Create(AttentionModel(true));
  ASSERT_TRUE(other);
  ASSERT_EQ(CountEinsums(*other), 1);
  for (const Node& n : other->model().graph.nodes) {
    if (n.op_type == "Einsum") {
      EXPECT_EQ(n.outputs[0], "scores");
    }
  }
}

// ---- the shape facts it relies on (static_info.h) -----------------------------------

TEST(LowerEinsum, StaticShapesOfTransposeGatherMatMulEinsum) {
  using Dims = std::vector<std::string>;
  test::GraphBuilder g;
  g.Input("x", {Symbol("N"), Dim{3, ""}, Dim{4, ""}});
  g.m.graph.inputs.push_back(ValueInfo{"u", DType::kF32, false, {}});
  auto& init = g.m.graph.initializers;
  init["i0"] = Tensor::FromVector(std::vector<int64_t>{0}, Shape{}).value();
  init["i1"] = Tensor::FromVector(std::vector<int64_t>{1}, Shape{}).value();
  init["pair"] = Tensor::FromVector(std::vector<int64_t>{0, 2}, Shape{2}).value();
  init["w"] = Tensor::FromVector(std::vector<float>(20, 1.0f), Shape{4, 5}).value();
  init["scale"] = Tensor::FromVector(std::vector<float>{2.0f}, Shape{}).value();
  g.Add("Transpose", {"x"}, "t").attrs.SetInts("perm", {2, 0, 1});
  g.Add("Gather", {"x", "i0"}, "g").attrs.SetInt("axis", 1);
  g.Add("Gather", {"x", "pair"}, "g2").attrs.SetInt("axis", -1);
  g.Add("MatMul", {"x", "w"}, "mm");
  g.Add("Einsum", {"x", "x"}, "e").attrs.SetString("equation", "bij,bkj->bik");
  g.Add("Gather", {"u", "i0"}, "u0");
  g.Add("Gather", {"u", "i1"}, "u1");
  g.Add("Gather", {"u", "pair"}, "u_pair");
  g.Add("Transpose", {"u0"}, "u0_t").attrs.SetInts("perm", {1, 0});
  g.Add("Transpose", {"u1"}, "u1_t").attrs.SetInts("perm", {1, 0});
  g.Add("Transpose", {"u0"}, "u0_reversed");  // the default perm: another class
  g.Add("Mul", {"u0", "scale"}, "u0_scaled");
  g.Add("Mul", {"u0", "u1"}, "u0_u1");  // two unknown shapes: no class shared
  const passes::StaticInfoMap info(g.m.graph);
  EXPECT_EQ(info.Get("t").dims, (Dims{"4", "$N", "3"}));
  EXPECT_EQ(info.Get("g").dims, (Dims{"$N", "4"}));
  EXPECT_EQ(info.Get("g2").dims, (Dims{"$N", "3", "2"}));
  EXPECT_EQ(info.Get("mm").dims, (Dims{"$N", "3", "5"}));
  EXPECT_EQ(info.Get("e").dims, (Dims{"$N", "3", "3"}));
  Dims x2, u0, u1;
  EXPECT_FALSE(info.DimsIfRank("x", 2, &x2)) << "x has rank 3";
  ASSERT_TRUE(info.DimsIfRank("u0", 2, &u0));
  ASSERT_TRUE(info.DimsIfRank("u1", 2, &u1));
  EXPECT_EQ(u0, u1);
  const int u0_class = info.Get("u0").shape_class;
  EXPECT_GE(u0_class, 0);
  EXPECT_NE(info.Get("u").shape_class, u0_class);
  EXPECT_NE(info.Get("u_pair").shape_class, u0_class);
  EXPECT_EQ(info.Get("u0_t").shape_class, info.Get("u1_t").shape_class);
  EXPECT_NE(info.Get("u0_t").shape_class, u0_class);
  EXPECT_NE(info.Get("u0_reversed").shape_class, info.Get("u0_t").shape_class);
  EXPECT_EQ(info.Get("u0_scaled").shape_class, u0_class);
  EXPECT_NE(info.Get("u0_u1").shape_class, u0_class);
}

// ---- values ---------------------------------------------------------------------------

TEST(LowerEinsum, HandComputedProducts) {
  const Tensor a = Tensor::FromVector(std::vector<float>{1, 2, 3, 4}, {2, 2}).value();
  const Tensor b = Tensor::FromVector(std::vector<float>{5, 6, 7, 8}, {2, 2}).value();
  struct Case {
    const char* equation;
    std::vector<float> expected;
  };
  // A = [[1,2],[3,4]], B = [[5,6],[7,8]]:
  //   ik,kj->ij: A B = [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]] = [[19,22],[43,50]]
  //   ki,kj->ji: (A^T B)^T, A^T B = [[1*5+3*7, 1*6+3*8], [2*5+4*7, 2*6+4*8]] = [[26,30],[38,44]]
  for (const Case& c : {Case{"ik,kj->ij", {19, 22, 43, 50}}, Case{"ki,kj->ji", {26, 38, 30, 44}}}) {
    SCOPED_TRACE(c.equation);
    const Model model = EinsumModel(c.equation, Shape{2, 2}, Shape{2, 2});
    EXPECT_TRUE(Lowered(model));
    const std::vector<Tensor> y = RunModel(model, {a, b});
    ASSERT_EQ(y.size(), 1u);
    ASSERT_EQ(y[0].shape(), (Shape{2, 2}));
    for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[0].data<float>()[i], c.expected[static_cast<size_t>(i)]) << i;
  }
}

TEST(LowerEinsum, HandComputedAttentionScores) {
  // blxd,blyd->blxy over b = 1, l = 3 pairs of 2x2 matrices: Y[l] = A[l] B[l]^T, each
  // entry a row of A[l] dotted with a row of B[l]. (12 elements: run by the kernels,
  // not folded at plan time.)
  const Tensor a = Tensor::FromVector(std::vector<float>{1, 2, 3, 4, /**/ 1, 0, 0, 1, /**/ 0, 1, 1, 0},
                                      {1, 3, 2, 2}).value();
  const Tensor b = Tensor::FromVector(std::vector<float>{5, 6, 7, 8, /**/ 2, 3, 4, 5, /**/ 1, 1, 0, 2},
                                      {1, 3, 2, 2}).value();
  // l = 0: [1,2].[5,6] = 17, [1,2].[7,8] = 23, [3,4].[5,6] = 39, [3,4].[7,8] = 53
  // l = 1: the identity times B^T is B^T = [[2,4],[3,5]]
  // l = 2: [0,1].[1,1] = 1, [0,1].[0,2] = 2, [1,0].[1,1] = 1, [1,0].[0,2] = 0
  const std::vector<float> expected = {17, 23, 39, 53, /**/ 2, 4, 3, 5, /**/ 1, 2, 1, 0};
  const Model model = EinsumModel("blxd,blyd->blxy", Shape{1, 3, 2, 2}, Shape{1, 3, 2, 2});
  EXPECT_TRUE(Lowered(model));
  const std::vector<Tensor> y = RunModel(model, {a, b});
  ASSERT_EQ(y.size(), 1u);
  ASSERT_EQ(y[0].shape(), (Shape{1, 3, 2, 2}));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_FLOAT_EQ(y[0].data<float>()[i], expected[i]) << i;
}

TEST(LowerEinsum, MatchesTheEinsumKernel) {
  struct Case {
    const char* equation;
    Shape a, b, y;
  };
  const std::vector<Case> cases = {
      {"blxd,blyd->blxy", {2, 3, 4, 5}, {2, 3, 6, 5}, {2, 3, 4, 6}},  // UNETR's scores
      {"blxy,blyd->blxd", {2, 3, 4, 6}, {2, 3, 6, 5}, {2, 3, 4, 5}},  // UNETR's values
      {"bhxd,bhyd->hbxy", {2, 3, 4, 5}, {2, 3, 6, 5}, {3, 2, 4, 6}},  // batch labels reordered
      {"b i k, b k j -> j b i", {3, 4, 5}, {3, 5, 6}, {6, 3, 4}},     // spaces, output transposed
      {"ik,kj->ij", {4, 5}, {5, 6}, {4, 6}},
      {"ki,kj->ji", {5, 4}, {5, 6}, {6, 4}},
  };
  std::mt19937 rng(7);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.equation);
    const Model model = EinsumModel(c.equation, c.a, c.b);
    EXPECT_TRUE(Lowered(model));
    const std::vector<Tensor> in = {Random(c.a, rng), Random(c.b, rng)};
    const std::vector<Tensor> lowered = RunModel(model, in);
    const std::vector<Tensor> einsum = RunModel(model, in, kNoLowering);
    ASSERT_EQ(lowered.size(), 1u);
    ASSERT_EQ(einsum.size(), 1u);
    EXPECT_EQ(lowered[0].shape(), c.y);
    EXPECT_LT(RelativeError(lowered[0], einsum[0]), 1e-5);
  }
}

TEST(LowerEinsum, AttentionMatchesTheEinsumKernel) {
  for (bool k_from_another_tensor : {false, true}) {
    SCOPED_TRACE(k_from_another_tensor ? "k from another tensor" : "q, k, v from one tensor");
    std::mt19937 rng(11);
    const Model model = AttentionModel(k_from_another_tensor);
    const std::vector<Tensor> in = {Random({3, 2, 4, 7, 8}, rng), Random({2, 2, 4, 7, 8}, rng)};
    const std::vector<Tensor> lowered = RunModel(model, in);
    const std::vector<Tensor> einsum = RunModel(model, in, kNoLowering);
    ASSERT_EQ(lowered.size(), 1u);
    ASSERT_EQ(einsum.size(), 1u);
    EXPECT_EQ(lowered[0].shape(), (Shape{2, 4, 7, 8}));
    EXPECT_LT(RelativeError(lowered[0], einsum[0]), 1e-5);
  }
}

}  // namespace
}  // namespace itkit
