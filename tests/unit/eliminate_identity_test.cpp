// eliminate_identity on hand-built graphs: a Cast to the dtype its input already has
// goes (torch's `.to(v.dtype)` after a softmax); real conversions, and a Cast that is a
// graph output, stay. Values against the graph with the pass disabled and by hand.
#include <gtest/gtest.h>

#include "graph_test_util.h"

namespace itkit {
namespace {

using Builder = test::GraphBuilder;

int CountOps(const Session& s, const std::string& op) {
  int n = 0;
  for (const Node& node : s.model().graph.nodes) n += node.op_type == op;
  return n;
}

// x -> Relu -> Cast(to) -> Mul(2) [-> Cast(to float) when `back_to_float`] -> y
Model CastChain(int64_t to, bool back_to_float) {
  Builder b;
  b.InputOfShape("x", {2, 3});
  b.g().initializers["two"] = Tensor::FromVector(std::vector<float>{2.0f}, {}).value();
  b.Add("Relu", {"x"}, "r");
  b.Add("Cast", {"r"}, "c").attrs.SetInt("to", to);
  if (back_to_float) {
    b.Add("Cast", {"c"}, "c2").attrs.SetInt("to", 1);
    b.Add("Mul", {"c2", "two"}, "y");
  } else {
    b.Add("Mul", {"c", "two"}, "y");
  }
  b.Output("y");
  return b.m;
}

std::unique_ptr<Session> Create(const Model& m) {
  auto s = Session::Create(m, SessionOptions{});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(EliminateIdentity, DropsACastToTheSameDType) {
  const Model m = CastChain(/*to=*/1, false);  // float -> float
  auto s = Create(m);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(CountOps(*s, "Cast"), 0);
  const Tensor x = Tensor::FromVector(std::vector<float>{-1, 0.5f, 2, -3, 4, 0}, {2, 3}).value();
  auto out = s->Run({x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const std::vector<float> want = {0, 1, 4, 0, 8, 0};  // 2 * relu(x), by hand
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ((*out)[0].data<float>()[i], want[i]) << i;
  const std::vector<Tensor> ref = test::RunModel(m, {x}, {"eliminate_identity"});
  ASSERT_EQ(ref.size(), 1u);
  EXPECT_EQ(test::RelativeError((*out)[0], ref[0]), 0.0);
}

TEST(EliminateIdentity, KeepsRealConversions) {
  // float -> int64 -> float truncates: both Casts change values and must stay.
  auto s = Create(CastChain(/*to=*/7, true));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(CountOps(*s, "Cast"), 2);
  const Tensor x = Tensor::FromVector(std::vector<float>{0.5f, 1.5f, 2.7f, -1, 3, 0}, {2, 3}).value();
  auto out = s->Run({x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const std::vector<float> want = {0, 2, 4, 0, 6, 0};  // 2 * trunc(relu(x))
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ((*out)[0].data<float>()[i], want[i]) << i;
}

TEST(EliminateIdentity, KeepsACastThatIsAGraphOutput) {
  Builder b;
  b.InputOfShape("x", {4});
  b.Add("Relu", {"x"}, "r");
  b.Add("Cast", {"r"}, "y").attrs.SetInt("to", 1);
  b.Output("y");
  auto s = Create(b.m);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(CountOps(*s, "Cast"), 1);  // the output keeps its name
}

}  // namespace
}  // namespace itkit
