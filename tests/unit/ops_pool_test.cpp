// MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool: hand-derived values
// for padding, ceil_mode, dilations, Indices, count_include_pad; errors.
#include <gtest/gtest.h>

#include <cmath>

#include "kernel_test_util.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using test::F32;
using test::RandomTensor;

Tensor Iota(Shape shape, float start = 1) {
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = start + static_cast<float>(i);
  return t;
}

Node Pool(const std::string& op, std::vector<int64_t> kernel, std::vector<int64_t> strides = {},
          std::vector<int64_t> pads = {}) {
  Node node = test::MakeNode(op, {"x"}, {"y"});
  node.attrs.SetInts("kernel_shape", std::move(kernel));
  if (!strides.empty()) node.attrs.SetInts("strides", std::move(strides));
  if (!pads.empty()) node.attrs.SetInts("pads", std::move(pads));
  return node;
}

TEST(MaxPool, TwoByTwoStrideTwo) {
  auto y = test::RunNode(Pool("MaxPool", {2, 2}, {2, 2}), {Iota({1, 1, 4, 4})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {6, 8, 14, 16});
}

TEST(MaxPool, CeilModeAndPadding) {
  Node node = Pool("MaxPool", {2}, {2});
  node.attrs.SetInt("ceil_mode", 1);
  auto y = test::RunNode(node, {Iota({1, 1, 5})});  // windows [0,1] [2,3] [4]
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {2, 4, 5});
  // Stride 3, pads 1/1: ceil gives 3 windows, but the last would start in the end
  // padding (start 5 >= 5 + 1 - 1), so it is dropped as in PyTorch: [-1,0] [2,3].
  Node drop = Pool("MaxPool", {2}, {3}, {1, 1});
  drop.attrs.SetInt("ceil_mode", 1);
  y = test::RunNode(drop, {Iota({1, 1, 5})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1, 4});
}

TEST(MaxPool, Dilations) {
  Node node = Pool("MaxPool", {2});
  node.attrs.SetInts("dilations", {2});
  auto y = test::RunNode(node, {F32({1, 5, 2, 4, 3}, {1, 1, 5})});  // pairs (0,2) (1,3) (2,4)
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {2, 5, 3});
}

TEST(MaxPool, IndicesRowAndColumnMajor) {
  Node node = Pool("MaxPool", {2, 2}, {2, 2});
  node.outputs = {"y", "i"};
  auto y = test::RunNode(node, {Iota({1, 2, 5, 5})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {7, 9, 17, 19, 32, 34, 42, 44});
  const int64_t* idx = (*y)[1].data<int64_t>();
  // Flat over the whole input: channel 1 starts at 25.
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 8), (std::vector<int64_t>{6, 8, 16, 18, 31, 33, 41, 43}));
  node.attrs.SetInt("storage_order", 1);  // w * H + h within the plane
  y = test::RunNode(node, {Iota({1, 2, 5, 5})});
  ASSERT_TRUE(y.ok());
  idx = (*y)[1].data<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 8), (std::vector<int64_t>{6, 16, 8, 18, 31, 41, 33, 43}));
}

// A NaN in a window is its maximum, index included, as torch 1.13 gives for this input:
// max_pool2d(arange(1, 17) 4x4 with NaN at (0,1) and (3,3), 2, 2, return_indices=True)
// = [nan, 8, 14, nan], indices [1, 7, 13, 15]. GlobalMaxPool: NaN (adaptive_max_pool2d).
TEST(MaxPool, NaNIsTheMaximumAsInTorch) {
  Node node = Pool("MaxPool", {2, 2}, {2, 2});
  node.outputs = {"y", "i"};
  Tensor x = Iota({1, 1, 4, 4});
  x.data<float>()[1] = std::nanf("");
  x.data<float>()[15] = std::nanf("");
  auto y = test::RunNode(node, {x});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  const float* v = (*y)[0].data<float>();
  EXPECT_TRUE(std::isnan(v[0]));
  EXPECT_EQ(v[1], 8.0f);
  EXPECT_EQ(v[2], 14.0f);
  EXPECT_TRUE(std::isnan(v[3]));
  const int64_t* idx = (*y)[1].data<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(idx, idx + 4), (std::vector<int64_t>{1, 7, 13, 15}));
  Tensor g = Iota({1, 1, 1, 4});
  g.data<float>()[1] = std::nanf("");
  auto mx = test::RunNode(test::MakeNode("GlobalMaxPool", {"x"}, {"y"}), {g});
  ASSERT_TRUE(mx.ok());
  EXPECT_TRUE(std::isnan((*mx)[0].data<float>()[0]));
}

TEST(MaxPool, ThreeDimensionalAndUint8) {
  Tensor x = RandomTensor({2, 3, 4, 4, 4}, 5);
  auto y = test::RunNode(Pool("MaxPool", {2, 2, 2}, {2, 2, 2}), {x});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  ASSERT_EQ((*y)[0].shape(), (Shape{2, 3, 2, 2, 2}));
  // Every output is the max of its 2x2x2 block.
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t d = 0; d < 2; ++d)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w) {
          float m = -1e30f;
          for (int64_t i = 0; i < 8; ++i)
            m = std::max(m, x.data<float>()[p * 64 + (2 * d + i / 4) * 16 + (2 * h + i / 2 % 2) * 4 + 2 * w + i % 2]);
          EXPECT_EQ((*y)[0].data<float>()[p * 8 + d * 4 + h * 2 + w], m);
        }
  Tensor u8 = Tensor::FromVector<uint8_t>({3, 200, 7, 9}, {1, 1, 4}).value();
  auto yu = test::RunNode(Pool("MaxPool", {2}, {2}), {u8});
  ASSERT_TRUE(yu.ok()) << yu.status().ToString();
  EXPECT_EQ((*yu)[0].data<uint8_t>()[0], 200);
  EXPECT_EQ((*yu)[0].data<uint8_t>()[1], 9);
}

TEST(AveragePool, CountIncludePad) {
  Node node = Pool("AveragePool", {3}, {1}, {1, 1});
  auto y = test::RunNode(node, {F32({1, 2, 3}, {1, 1, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1.5f, 2, 2.5f});
  node.attrs.SetInt("count_include_pad", 1);
  y = test::RunNode(node, {F32({1, 2, 3}, {1, 1, 3})});
  ASSERT_TRUE(y.ok());
  test::ExpectValues((*y)[0], {1, 2, 5.0f / 3});
}

TEST(AveragePool, CeilModeAndSameUpper) {
  Node node = Pool("AveragePool", {3, 3}, {2, 2});
  node.attrs.SetInt("ceil_mode", 1);
  auto y = test::RunNode(node, {Iota({1, 1, 4, 4})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {6, 7.5f, 12, 13.5f});
  // SAME_UPPER, kernel 2 on 3 samples: pad one at the end (not counted).
  Node same = Pool("AveragePool", {2});
  same.attrs.SetString("auto_pad", "SAME_UPPER");
  y = test::RunNode(same, {F32({2, 4, 8}, {1, 1, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {3, 6, 8});
}

TEST(GlobalPool, AverageAndMax) {
  Tensor x = Iota({2, 2, 2, 3, 2});  // planes of 12 values
  auto avg = test::RunNode(test::MakeNode("GlobalAveragePool", {"x"}, {"y"}), {x});
  ASSERT_TRUE(avg.ok()) << avg.status().ToString();
  EXPECT_EQ((*avg)[0].shape(), (Shape{2, 2, 1, 1, 1}));
  test::ExpectValues((*avg)[0], {6.5f, 18.5f, 30.5f, 42.5f});
  auto mx = test::RunNode(test::MakeNode("GlobalMaxPool", {"x"}, {"y"}), {x});
  ASSERT_TRUE(mx.ok());
  test::ExpectValues((*mx)[0], {12, 24, 36, 48});
}

TEST(Pool, Errors) {
  Node no_kernel = test::MakeNode("MaxPool", {"x"}, {"y"});
  EXPECT_FALSE(test::RunNode(no_kernel, {Iota({1, 1, 4, 4})}).ok());
  EXPECT_FALSE(test::RunNode(Pool("MaxPool", {5, 5}), {Iota({1, 1, 4, 4})}).ok());
  EXPECT_FALSE(test::RunNode(Pool("MaxPool", {2, 2}, {0, 1}), {Iota({1, 1, 4, 4})}).ok());
  EXPECT_FALSE(test::RunNode(Pool("MaxPool", {2}), {Iota({4, 4})}).ok());  // no spatial axis
  Tensor h = Tensor::Allocate(DType::kF16, {1, 1, 4}).value();
  auto r = test::RunNode(Pool("AveragePool", {2}), {h});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  Tensor u8 = Tensor::FromVector<uint8_t>({1, 2}, {1, 1, 2}).value();
  EXPECT_FALSE(test::RunNode(Pool("AveragePool", {2}), {u8}).ok());
}

}  // namespace
}  // namespace itkit
