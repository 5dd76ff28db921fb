// Einsum against hand-derived values.
#include <gtest/gtest.h>

#include "op_test_util.h"

namespace itkit {
namespace {

Tensor F32(std::vector<float> v, Shape s) { return *Tensor::FromVector(v, std::move(s)); }

Result<Tensor> Einsum(const std::string& eq, std::vector<Tensor> inputs) {
  std::vector<std::string> names;
  for (size_t i = 0; i < inputs.size(); ++i) names.push_back("x" + std::to_string(i));
  Node n = test::MakeNode("Einsum", names, {"y"});
  n.attrs.SetString("equation", eq);
  ITKIT_ASSIGN_OR_RETURN(std::vector<Tensor> out, test::RunNode(n, inputs));
  return out[0];
}

TEST(Einsum, BatchedMatmulLikeAttention) {
  // a[1,2,3] (b,x,d), b[1,2,3] (b,y,d) -> [1,2,2]: rows dotted with rows.
  Tensor a = F32({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  Tensor b = F32({1, 0, 1, 0, 1, 0}, {1, 2, 3});
  auto y = Einsum("bxd,byd->bxy", {a, b});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ(y->shape(), (Shape{1, 2, 2}));
  // [1,2,3]·[1,0,1]=4, ·[0,1,0]=2; [4,5,6]·[1,0,1]=10, ·[0,1,0]=5
  const std::vector<float> expect = {4, 2, 10, 5};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y->data<float>()[i], expect[static_cast<size_t>(i)]);
}

TEST(Einsum, ImplicitOutputTransposeAndTrace) {
  Tensor m = F32({1, 2, 3, 4}, {2, 2});
  auto t = Einsum("ji", {m});  // implicit output "ij": the transpose
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const std::vector<float> tr = {1, 3, 2, 4};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(t->data<float>()[i], tr[static_cast<size_t>(i)]);
  auto trace = Einsum("ii", {m});  // implicit output is empty: the trace 1+4
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->rank(), 0);
  EXPECT_FLOAT_EQ(trace->data<float>()[0], 5.0f);
}

TEST(Einsum, EllipsisDiagonalAndBroadcast) {
  // "...ii->...i" on [2,2,2]: the diagonal of each matrix.
  Tensor x = F32({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  auto d = Einsum("...ii->...i", {x});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->shape(), (Shape{2, 2}));
  const std::vector<float> diag = {1, 4, 5, 8};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(d->data<float>()[i], diag[static_cast<size_t>(i)]);
  // "...j,j->..." with a [1,3] vs [3]: broadcast batch of one.
  auto s = Einsum("...j,j->...", {F32({1, 2, 3}, {1, 3}), F32({1, 1, 2}, {3})});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->shape(), (Shape{1}));
  EXPECT_FLOAT_EQ(s->data<float>()[0], 9.0f);
}

TEST(Einsum, ErrorsNameTheProblem) {
  auto bad = Einsum("ij,jk->ik", {F32({1, 2}, {1, 2}), F32({1, 2, 3}, {3, 1})});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("label 'j'"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(Einsum("ij->iz", {F32({1, 2}, {1, 2})}).ok());
  EXPECT_FALSE(Einsum("i,j", {F32({1}, {1})}).ok());
}

}  // namespace
}  // namespace itkit
