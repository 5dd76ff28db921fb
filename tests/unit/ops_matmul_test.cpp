// MatMul / Gemm: hand-derived products, broadcasting and 1-D rules, the oneDNN path
// against the reference loops, and errors.
#include <gtest/gtest.h>

#include "cpu/matmul_kernels.h"
#include "kernel_test_util.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using cpu::MatMulImpl;
using test::F32;
using test::RandomTensor;

void ExpectFastMatchesReference(const Node& node, const std::vector<Tensor>& in) {
  auto ref = test::RunNodeWith(
      node, in, [](const NodeSignature& s) { return cpu::CreateMatMulKernel(s, MatMulImpl::kReference); });
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  auto fast = test::RunNode(node, in);
  ASSERT_TRUE(fast.ok()) << fast.status().ToString();
  test::ExpectClose((*fast)[0], (*ref)[0], 1e-4f, 1e-4f);
}

TEST(MatMul, HandDerived) {
  Node node = test::MakeNode("MatMul", {"a", "b"}, {"y"});
  // [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
  auto y = test::RunNode(node, {F32({1, 2, 3, 4, 5, 6}, {2, 3}), F32({1, 0, 0, 1, 1, 1}, {3, 2})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {4, 5, 10, 11});
}

TEST(MatMul, OneDimensionalOperands) {
  Node node = test::MakeNode("MatMul", {"a", "b"}, {"y"});
  auto y = test::RunNode(node, {F32({1, 2}, {2}), F32({1, 2, 3, 4, 5, 6}, {2, 3})});  // [2] x [2,3] -> [3]
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ((*y)[0].shape(), (Shape{3}));
  test::ExpectValues((*y)[0], {9, 12, 15});
  y = test::RunNode(node, {F32({1, 2, 3, 4, 5, 6}, {2, 3}), F32({1, 0, -1}, {3})});  // [2,3] x [3] -> [2]
  ASSERT_TRUE(y.ok());
  EXPECT_EQ((*y)[0].shape(), (Shape{2}));
  test::ExpectValues((*y)[0], {-2, -2});
  y = test::RunNode(node, {F32({1, 2, 3}, {3}), F32({4, 5, 6}, {3})});  // dot product -> scalar
  ASSERT_TRUE(y.ok());
  EXPECT_EQ((*y)[0].shape(), Shape{});
  test::ExpectValues((*y)[0], {32});
  // Batched B with a 1-D A: [2] x [3,2,2] -> [3,2].
  ExpectFastMatchesReference(node, {RandomTensor({2}, 1), RandomTensor({3, 2, 2}, 2)});
}

TEST(MatMul, BroadcastBatchesMatchReference) {
  Node node = test::MakeNode("MatMul", {"a", "b"}, {"y"});
  ExpectFastMatchesReference(node, {RandomTensor({2, 1, 3, 4}, 1), RandomTensor({3, 4, 5}, 2)});
  ExpectFastMatchesReference(node, {RandomTensor({2, 4, 16, 8}, 3), RandomTensor({2, 4, 8, 16}, 4)});  // attention
  ExpectFastMatchesReference(node, {RandomTensor({2, 97, 64}, 5), RandomTensor({64, 33}, 6)});         // linear layer
  ExpectFastMatchesReference(node, {RandomTensor({1, 300, 200}, 7), RandomTensor({1, 200, 150}, 8)});
  ExpectFastMatchesReference(node, {RandomTensor({4, 1, 5, 6}, 9), RandomTensor({1, 3, 6, 2}, 10)});
}

TEST(Gemm, AttributesAndBiasBroadcast) {
  // A^T = [[1,2],[3,4]], B^T = [[1,1],[0,1]] -> A^T B^T = [[1,3],[3,7]];
  // alpha 2, beta 0.5, C = [10, 20] broadcast over rows.
  Node node = test::MakeNode("Gemm", {"a", "b", "c"}, {"y"});
  node.attrs.SetInt("transA", 1);
  node.attrs.SetInt("transB", 1);
  node.attrs.SetFloat("alpha", 2.0f);
  node.attrs.SetFloat("beta", 0.5f);
  auto y = test::RunNode(node, {F32({1, 3, 2, 4}, {2, 2}), F32({1, 0, 1, 1}, {2, 2}), F32({10, 20}, {2})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {7, 16, 11, 24});
  // C of shape [M, 1] and scalar C; no C.
  Node plain = test::MakeNode("Gemm", {"a", "b", "c"}, {"y"});
  ExpectFastMatchesReference(plain, {RandomTensor({5, 7}, 1), RandomTensor({7, 3}, 2), RandomTensor({5, 1}, 3)});
  ExpectFastMatchesReference(plain, {RandomTensor({5, 7}, 1), RandomTensor({7, 3}, 2), RandomTensor({}, 3)});
  ExpectFastMatchesReference(plain, {RandomTensor({5, 7}, 1), RandomTensor({7, 3}, 2), RandomTensor({5, 3}, 3)});
  Node no_c = test::MakeNode("Gemm", {"a", "b"}, {"y"});
  no_c.attrs.SetInt("transB", 1);
  ExpectFastMatchesReference(no_c, {RandomTensor({64, 100}, 1), RandomTensor({30, 100}, 2)});
}

TEST(MatMul, Errors) {
  Node node = test::MakeNode("MatMul", {"a", "b"}, {"y"});
  EXPECT_FALSE(test::RunNode(node, {RandomTensor({2, 3}, 1), RandomTensor({4, 2}, 2)}).ok());
  EXPECT_FALSE(test::RunNode(node, {RandomTensor({2, 2, 3}, 1), RandomTensor({3, 3, 2}, 2)}).ok());
  Tensor i64 = Tensor::FromVector<int64_t>({1, 2, 3, 4}, {2, 2}).value();
  auto r = test::RunNode(node, {i64, i64});
  EXPECT_FALSE(r.ok());
  Node gemm = test::MakeNode("Gemm", {"a", "b", "c"}, {"y"});
  EXPECT_FALSE(test::RunNode(gemm, {RandomTensor({2, 3}, 1), RandomTensor({3, 4}, 2), RandomTensor({3}, 3)}).ok());
  EXPECT_FALSE(test::RunNode(gemm, {RandomTensor({2, 3, 1}, 1), RandomTensor({3, 4}, 2)}).ok());
}

}  // namespace
}  // namespace itkit
