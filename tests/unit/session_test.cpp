// Session, planner and memory planner tests on small hand-built graphs with
// hand-derived expected values.
#include <gtest/gtest.h>

#include "itkit/passes.h"
#include "itkit/session.h"
#include "session/plan.h"
#include "graph_test_util.h"

namespace itkit {
namespace {

Node MakeNode(const std::string& name, const std::string& op, std::vector<std::string> in,
              std::vector<std::string> out) {
  Node n;
  n.name = name;
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

ValueInfo Input(const std::string& name, std::vector<Dim> dims) { return test::F32Input(name, std::move(dims)); }

TEST(ArenaPlanner, ReusesMemoryOfDeadBuffersAndNeverOverlapsLiveOnes) {
  // a:[0,1] b:[1,2] c:[2,3] — a and c never live together, so c may reuse a's bytes.
  std::vector<BufferLifetime> bufs = {{1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}};
  const size_t arena = AssignArenaOffsets(bufs, 64);
  EXPECT_EQ(arena, 2 * 1024u);  // two 1000-byte buffers rounded up to 64
  for (size_t i = 0; i < bufs.size(); ++i)
    for (size_t j = i + 1; j < bufs.size(); ++j) {
      const bool live_together = !(bufs[i].last < bufs[j].first || bufs[j].last < bufs[i].first);
      const bool overlap = bufs[i].offset < bufs[j].offset + 1024 && bufs[j].offset < bufs[i].offset + 1024;
      EXPECT_FALSE(live_together && overlap) << i << " and " << j;
    }
}

// x[N,C,L] → Shape → Gather(0) → Unsqueeze → Concat([n, -1]) → Reshape: flattens all
// but the batch dimension, the chain torch exports for x.view(x.size(0), -1).
Model FlattenModel() {
  Model m;
  Graph& g = m.graph;
  g.opsets[""] = 17;
  g.inputs.push_back(Input("x", {Dim{-1, "N"}, Dim{2, ""}, Dim{-1, "L"}}));
  g.initializers["zero"] = *Tensor::FromVector<int64_t>({0}, {});
  g.initializers["axes0"] = *Tensor::FromVector<int64_t>({0}, {1});
  g.initializers["minus1"] = *Tensor::FromVector<int64_t>({-1}, {1});
  g.nodes.push_back(MakeNode("shape", "Shape", {"x"}, {"s"}));
  g.nodes.push_back(MakeNode("gather", "Gather", {"s", "zero"}, {"n"}));
  g.nodes.push_back(MakeNode("unsq", "Unsqueeze", {"n", "axes0"}, {"n1"}));
  Node concat = MakeNode("concat", "Concat", {"n1", "minus1"}, {"target"});
  concat.attrs.SetInt("axis", 0);
  g.nodes.push_back(concat);
  g.nodes.push_back(MakeNode("relu", "Relu", {"x"}, {"r"}));
  g.nodes.push_back(MakeNode("reshape", "Reshape", {"r", "target"}, {"y"}));
  g.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  return m;
}

TEST(Session, ShapeChainsFoldPerInputShape) {
  auto session = Session::Create(FlattenModel());
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  for (int64_t n : {1, 3}) {
    for (int64_t len : {2, 5}) {
      auto x = Tensor::Allocate(DType::kF32, {n, 2, len});
      ASSERT_TRUE(x.ok());
      for (int64_t i = 0; i < x->size(); ++i) x->data<float>()[i] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(i);
      auto out = (*session)->Run(std::vector<Tensor>{*x});
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      ASSERT_EQ((*out)[0].shape(), (Shape{n, 2 * len}));
      for (int64_t i = 0; i < x->size(); ++i)
        EXPECT_EQ((*out)[0].data<float>()[i], i % 2 ? 0.0f : static_cast<float>(i));
    }
  }
  // Only Relu and Reshape remain as steps: the shape chain was evaluated while planning.
  auto stats = (*session)->StatsFor({{3, 2, 5}});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->num_steps, 2u);
}

TEST(Session, RejectsWrongDtypeRankAndStaticDim) {
  auto session = Session::Create(FlattenModel());
  ASSERT_TRUE(session.ok());
  auto wrong_dtype = Tensor::Allocate(DType::kI64, {1, 2, 3});
  auto r1 = (*session)->Run(std::vector<Tensor>{*wrong_dtype});
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find("float32"), std::string::npos) << r1.status().message();
  auto wrong_rank = Tensor::Allocate(DType::kF32, {2, 3});
  EXPECT_FALSE((*session)->Run(std::vector<Tensor>{*wrong_rank}).ok());
  auto wrong_dim = Tensor::Allocate(DType::kF32, {1, 3, 3});  // dim 1 is static 2
  auto r3 = (*session)->Run(std::vector<Tensor>{*wrong_dim});
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("dimension 1 must be 2"), std::string::npos) << r3.status().message();
}

TEST(Session, UnknownPassNameIsAnError) {
  SessionOptions options;
  options.disabled_passes = {"no_such_pass"};
  auto session = Session::Create(FlattenModel(), options);
  ASSERT_FALSE(session.ok());
  EXPECT_NE(session.status().message().find("no_such_pass"), std::string::npos);
}

// Relu chain: x → a → b → c → y; the arena holds at most two live intermediates.
TEST(Session, ArenaReusesBuffersAlongAChain) {
  Model m;
  m.graph.opsets[""] = 17;
  m.graph.inputs.push_back(Input("x", {Dim{1000, ""}}));
  const char* names[] = {"x", "a", "b", "c", "d", "y"};
  for (int i = 0; i < 5; ++i) m.graph.nodes.push_back(MakeNode(std::string("n") + names[i + 1], i % 2 ? "Neg" : "Relu", {names[i]}, {names[i + 1]}));
  m.graph.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  SessionOptions options;
  options.disabled_passes = {"fuse_elementwise"};  // which would make the chain one node
  auto session = Session::Create(std::move(m), options);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  auto stats = (*session)->StatsFor({{1000}});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->naive_bytes, 4u * 4000u);
  EXPECT_EQ(stats->arena_bytes, 2u * 4032u);  // 4000 bytes rounded to 64, two live at once
  EXPECT_EQ(stats->arena_bytes_per_backend.at("cpu"), 2u * 4032u);  // the only backend
  auto x = Tensor::FromVector<float>(std::vector<float>(1000, -2.0f), {1000});
  auto out = (*session)->Run(std::vector<Tensor>{*x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // relu(-2)=0, neg→0 (-0), relu→0, neg→-0, relu→0
  EXPECT_EQ((*out)[0].data<float>()[0], 0.0f);
}

// A Reshape whose target shape is a graph input (ONNX's conformance cases do this):
// the small int64 input is planned as a constant and its values key the plan cache.
TEST(Session, ShapeValuedGraphInputsKeyThePlan) {
  Model m;
  m.graph.opsets[""] = 17;
  m.graph.inputs.push_back(Input("x", {Dim{2, ""}, Dim{3, ""}}));
  ValueInfo shape_in;
  shape_in.name = "target";
  shape_in.dtype = DType::kI64;
  m.graph.inputs.push_back(shape_in);
  m.graph.nodes.push_back(MakeNode("reshape", "Reshape", {"x", "target"}, {"y"}));
  m.graph.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  auto session = Session::Create(std::move(m));
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  auto x = Tensor::FromVector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  for (const std::vector<int64_t>& target : {std::vector<int64_t>{3, 2}, std::vector<int64_t>{6}, std::vector<int64_t>{1, -1}}) {
    auto t = Tensor::FromVector<int64_t>(target, {static_cast<int64_t>(target.size())});
    auto out = (*session)->Run(std::vector<Tensor>{*x, *t});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const Shape expect = target[0] == 1 ? Shape{1, 6} : Shape(target.begin(), target.end());
    EXPECT_EQ((*out)[0].shape(), expect);
    EXPECT_EQ((*out)[0].data<float>()[5], 5.0f);
  }
}

}  // namespace
}  // namespace itkit
