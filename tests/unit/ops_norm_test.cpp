// BatchNormalization, InstanceNormalization, LayerNormalization, itkit.GroupNorm,
// itkit.LayerNormAct: hand-derived values, fast vs reference, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "cpu/norm_kernels.h"
#include "kernel_test_util.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using cpu::NormImpl;
using test::F32;
using test::RandomTensor;

test::KernelMaker Maker(NormImpl impl) {
  return [=](const NodeSignature& sig) { return cpu::CreateNormKernel(sig, impl); };
}

void ExpectFastMatchesReference(const Node& node, const std::vector<Tensor>& inputs, float tol = 2e-5f) {
  auto ref = test::RunNodeWith(node, inputs, Maker(NormImpl::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  auto fast = test::RunNode(node, inputs);
  ASSERT_TRUE(fast.ok()) << fast.status().ToString();
  ASSERT_EQ(fast->size(), ref->size());
  for (size_t i = 0; i < ref->size(); ++i) test::ExpectClose((*fast)[i], (*ref)[i], tol, tol);
}

TEST(InstanceNorm, HandDerived) {
  // Channel 0: [1,2,3,4], mean 2.5, variance 1.25, scale 2, bias 1.
  Node node = test::MakeNode("InstanceNormalization", {"x", "s", "b"}, {"y"});
  // Channel 1 has zero variance: epsilon keeps it finite (0 * ... + bias).
  node.attrs.SetFloat("epsilon", 1e-5f);
  auto y = test::RunNode(node, {F32({1, 2, 3, 4, 2, 2, 2, 2}, {1, 2, 4}), F32({2, 3}, {2}), F32({1, -1}, {2})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  const float k = 2.0f / std::sqrt(1.25f);
  test::ExpectValues((*y)[0], {1 - 1.5f * k, 1 - 0.5f * k, 1 + 0.5f * k, 1 + 1.5f * k, -1, -1, -1, -1}, 1e-4f);
}

TEST(GroupNorm, HandDerivedWithLeakyRelu) {
  // Two groups of two channels. Group 0 = {0, 4 | 0, 4}: mean 2, variance 4 -> -1, 1.
  // Group 1 = {1, 1 | 3, 3}: mean 2, variance 1 -> -1, -1, 1, 1. Scale per channel.
  Node node = test::MakeNode("GroupNorm", {"x", "s", "b"}, {"y"}, kItkitDomain);
  node.attrs.SetInt("num_groups", 2);
  node.attrs.SetFloat("epsilon", 0.0f);
  node.attrs.SetString("activation", "LeakyRelu");
  node.attrs.SetFloat("alpha", 0.1f);
  const std::vector<Tensor> in = {F32({0, 4, 0, 4, 1, 1, 3, 3}, {1, 4, 2}), F32({1, 2, 3, 4}, {4}),
                                  F32({0, 0, 0, 0.5f}, {4})};
  for (NormImpl impl : {NormImpl::kReference, NormImpl::kAuto}) {
    auto y = test::RunNodeWith(node, in, Maker(impl));
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    test::ExpectValues((*y)[0], {-0.1f, 1, -0.2f, 2, -0.3f, -0.3f, 4.5f, 4.5f}, 1e-5f);
  }
}

TEST(GroupNorm, HandDerivedWithResidual) {
  // The case above plus a residual before the activation: pre-activation values
  // {-1, 1, -2, 2, -3, -3, 4.5, 4.5} + r = {-0.5, -1, 1, 3, -2, 1, -0.5, 4.5}.
  Node node = test::MakeNode("GroupNorm", {"x", "s", "b", "r"}, {"y"}, kItkitDomain);
  node.attrs.SetInt("num_groups", 2);
  node.attrs.SetFloat("epsilon", 0.0f);
  node.attrs.SetString("activation", "LeakyRelu");
  node.attrs.SetFloat("alpha", 0.1f);
  const std::vector<Tensor> in = {F32({0, 4, 0, 4, 1, 1, 3, 3}, {1, 4, 2}), F32({1, 2, 3, 4}, {4}),
                                  F32({0, 0, 0, 0.5f}, {4}), F32({0.5f, -2, 3, 1, 1, 4, -5, 0}, {1, 4, 2})};
  for (NormImpl impl : {NormImpl::kReference, NormImpl::kAuto}) {
    auto y = test::RunNodeWith(node, in, Maker(impl));
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    test::ExpectValues((*y)[0], {-0.05f, -0.1f, 1, 3, -0.2f, 1, -0.05f, 4.5f}, 1e-5f);
  }
  // The residual must have X's shape exactly: no broadcasting.
  auto bad = test::RunNode(node, {in[0], in[1], in[2], F32({1, 2, 3, 4}, {1, 4, 1})});
  EXPECT_FALSE(bad.ok());
}

TEST(GroupNorm, FastMatchesReference) {
  struct Case {
    Shape x;
    int64_t groups;
    std::string act;
    float offset;  // a large common offset tests the statistics' accuracy
  };
  const std::vector<Case> cases = {
      {{2, 8, 17, 19, 23}, 2, "LeakyRelu", 0.0f}, {{1, 8, 9, 10, 11}, 8, "", 100.0f},
      {{1, 6, 5, 7}, 3, "Relu", -3.0f},          {{1, 1, 300001}, 1, "Sigmoid", 1000.0f},
      {{3, 4, 33}, 4, "Tanh", 0.5f},             {{1, 320, 4, 4, 4}, 320, "LeakyRelu", 0.0f},
      {{1, 4, 1}, 2, "Gelu", 0.0f},
  };
  uint32_t seed = 7;
  for (const Case& c : cases) {
    SCOPED_TRACE(ShapeToString(c.x) + " groups " + std::to_string(c.groups));
    Node node = test::MakeNode("GroupNorm", {"x", "s", "b"}, {"y"}, kItkitDomain);
    node.attrs.SetInt("num_groups", c.groups);
    node.attrs.SetFloat("epsilon", 1e-5f);
    node.attrs.SetString("activation", c.act);
    node.attrs.SetFloat("alpha", 0.01f);
    ExpectFastMatchesReference(node, {RandomTensor(c.x, ++seed, c.offset - 2, c.offset + 2),
                                      RandomTensor({c.x[1]}, ++seed, 0.5f, 1.5f), RandomTensor({c.x[1]}, ++seed)},
                               5e-5f);
  }
  // With a residual (lengths around the vector width, a LeakyRelu and a transcendental).
  for (const Case& c : {Case{{2, 8, 5, 7, 9}, 4, "LeakyRelu", 0.0f}, Case{{1, 6, 4099}, 3, "Sigmoid", 10.0f},
                        Case{{1, 4, 1}, 4, "", 0.0f}}) {
    SCOPED_TRACE("residual " + ShapeToString(c.x));
    Node node = test::MakeNode("GroupNorm", {"x", "s", "b", "r"}, {"y"}, kItkitDomain);
    node.attrs.SetInt("num_groups", c.groups);
    node.attrs.SetString("activation", c.act);
    ExpectFastMatchesReference(node, {RandomTensor(c.x, ++seed, c.offset - 2, c.offset + 2),
                                      RandomTensor({c.x[1]}, ++seed, 0.5f, 1.5f), RandomTensor({c.x[1]}, ++seed),
                                      RandomTensor(c.x, ++seed, -3, 3)},
                               5e-5f);
  }
  // InstanceNormalization runs the same kernel with one channel per group.
  Node inst = test::MakeNode("InstanceNormalization", {"x", "s", "b"}, {"y"});
  ExpectFastMatchesReference(inst, {RandomTensor({2, 5, 6, 7, 8}, 1), RandomTensor({5}, 2), RandomTensor({5}, 3)});
}

TEST(LayerNorm, HandDerivedWithStatistics) {
  // Rows [1,2,3] (mean 2, var 2/3) and [4,6,8] (mean 6, var 8/3) both normalise to
  // [-1.2247, 0, 1.2247].
  Node node = test::MakeNode("LayerNormalization", {"x", "s", "b"}, {"y", "mean", "inv_std"});
  node.attrs.SetFloat("epsilon", 0.0f);
  auto y = test::RunNode(node, {F32({1, 2, 3, 4, 6, 8}, {2, 3}), F32({1, 2, 1}, {3}), F32({0, 1, 0}, {3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  const float r = std::sqrt(1.5f);
  test::ExpectValues((*y)[0], {-r, 1, r, -r, 1, r}, 1e-5f);
  EXPECT_EQ((*y)[1].shape(), (Shape{2, 1}));
  test::ExpectValues((*y)[1], {2, 6}, 1e-6f);
  test::ExpectValues((*y)[2], {r, r / 2}, 1e-5f);
}

TEST(LayerNorm, FastMatchesReference) {
  for (int64_t axis : {-1, -2, 1, 0}) {
    SCOPED_TRACE("axis " + std::to_string(axis));
    Node node = test::MakeNode("LayerNormalization", {"x", "s", "b"}, {"y", "m", "r"});
    node.attrs.SetInt("axis", axis);
    const Shape x = {3, 5, 4, 6};
    const int a = static_cast<int>(axis < 0 ? axis + 4 : axis);
    Shape norm(x.begin() + a, x.end());
    Shape scale = norm;
    scale[0] = 1;  // broadcast along the first normalised axis
    ExpectFastMatchesReference(node, {RandomTensor(x, 11, 5, 9), RandomTensor(scale, 12), RandomTensor(norm, 13)});
  }
  Node fused = test::MakeNode("LayerNormAct", {"x", "s"}, {"y"}, kItkitDomain);
  fused.attrs.SetString("activation", "Gelu");
  ExpectFastMatchesReference(fused, {RandomTensor({4, 197, 64}, 3), RandomTensor({64}, 4)});
}

TEST(BatchNorm, InferenceHandDerived) {
  // Channel 0: (x - 1) / sqrt(4) * 2 + 0.5; channel 1: (x - 0) / 1 * 1 + 0.
  Node node = test::MakeNode("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"});
  node.attrs.SetFloat("epsilon", 0.0f);
  const std::vector<Tensor> in = {F32({1, 3, 5, -5}, {1, 2, 2}), F32({2, 1}, {2}), F32({0.5f, 0}, {2}),
                                  F32({1, 0}, {2}), F32({4, 1}, {2})};
  for (NormImpl impl : {NormImpl::kReference, NormImpl::kAuto}) {
    auto y = test::RunNodeWith(node, in, Maker(impl));
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    test::ExpectValues((*y)[0], {0.5f, 2.5f, 5, -5});
  }
}

TEST(BatchNorm, TrainingModeUsesBatchStatistics) {
  // One channel over two samples: [1,3] and [5,7]: mean 4, biased variance 5.
  Node node = test::MakeNode("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y", "rm", "rv"});
  node.attrs.SetInt("training_mode", 1);
  node.attrs.SetFloat("epsilon", 0.0f);
  node.attrs.SetFloat("momentum", 0.9f);
  auto y = test::RunNode(node, {F32({1, 3, 5, 7}, {2, 1, 2}), F32({1}, {1}), F32({0}, {1}), F32({10}, {1}),
                                F32({2}, {1})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  const float s = std::sqrt(5.0f);
  test::ExpectValues((*y)[0], {-3 / s, -1 / s, 1 / s, 3 / s}, 1e-5f);
  test::ExpectValues((*y)[1], {10 * 0.9f + 4 * 0.1f}, 1e-5f);
  test::ExpectValues((*y)[2], {2 * 0.9f + 5 * 0.1f}, 1e-5f);
}

TEST(Norm, Errors) {
  Node gn = test::MakeNode("GroupNorm", {"x", "s", "b"}, {"y"}, kItkitDomain);
  gn.attrs.SetInt("num_groups", 3);
  auto r = test::RunNode(gn, {RandomTensor({1, 4, 5}, 1), RandomTensor({4}, 2), RandomTensor({4}, 3)});
  EXPECT_FALSE(r.ok());
  gn.attrs.Erase("num_groups");
  r = test::RunNode(gn, {RandomTensor({1, 4, 5}, 1), RandomTensor({4}, 2), RandomTensor({4}, 3)});
  EXPECT_FALSE(r.ok());
  Node inst = test::MakeNode("InstanceNormalization", {"x", "s", "b"}, {"y"});
  r = test::RunNode(inst, {RandomTensor({1, 4, 5}, 1), RandomTensor({3}, 2), RandomTensor({4}, 3)});
  EXPECT_FALSE(r.ok());
  Tensor h = Tensor::Allocate(DType::kF16, {1, 4, 5}).value();
  Tensor hs = Tensor::Allocate(DType::kF16, {4}).value();
  r = test::RunNode(inst, {h, hs, hs});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  Node ln = test::MakeNode("LayerNormalization", {"x", "s"}, {"y"});
  ln.attrs.SetInt("axis", 3);
  r = test::RunNode(ln, {RandomTensor({2, 3}, 1), RandomTensor({3}, 2)});
  EXPECT_FALSE(r.ok());
  ln.attrs.SetInt("axis", -1);
  r = test::RunNode(ln, {RandomTensor({2, 3}, 1), RandomTensor({2}, 2)});
  EXPECT_FALSE(r.ok());
  Node bn = test::MakeNode("BatchNormalization", {"x", "s", "b", "m"}, {"y"});
  r = test::RunNode(bn, {RandomTensor({1, 2, 3}, 1), RandomTensor({2}, 2), RandomTensor({2}, 3), RandomTensor({2}, 4)});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace itkit
