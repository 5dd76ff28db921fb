// Resize / Upsample: hand-derived values for each coordinate and nearest mode, the
// fast kernel against the reference on random cases, and errors.
#include <gtest/gtest.h>

#include <string>

#include "cpu/resize_kernels.h"
#include "kernel_test_util.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using cpu::ResizeImpl;
using test::F32;
using test::RandomTensor;

Tensor I64(std::vector<int64_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Tensor::FromVector(v, {n}).value();
}

// Resize-13 with sizes (roi and scales omitted).
Node ResizeNode(const std::string& mode, const std::string& coord, const std::string& nearest = "") {
  Node node = test::MakeNode("Resize", {"x", "", "", "sizes"}, {"y"});
  node.attrs.SetString("mode", mode);
  node.attrs.SetString("coordinate_transformation_mode", coord);
  if (!nearest.empty()) node.attrs.SetString("nearest_mode", nearest);
  return node;
}

std::vector<float> RunBoth(const Node& node, const std::vector<Tensor>& in, int64_t opset = 13) {
  auto ref = test::RunNodeWith(
      node, in, [](const NodeSignature& s) { return cpu::CreateResizeKernel(s, ResizeImpl::kReference); }, {}, opset);
  auto fast = test::RunNode(node, in, opset);
  EXPECT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_TRUE(fast.ok()) << fast.status().ToString();
  if (!ref.ok() || !fast.ok()) return {};
  test::ExpectClose((*fast)[0], (*ref)[0], 1e-5f, 1e-5f);
  const Tensor& t = (*fast)[0];
  return std::vector<float>(t.data<float>(), t.data<float>() + t.size());
}

TEST(Resize, LinearCoordinateModes) {
  const std::vector<Tensor> in = {F32({0, 1}, {1, 1, 2}), Tensor(), Tensor(), I64({1, 1, 4})};
  // half_pixel: x_original = (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (edges clamp).
  EXPECT_EQ(RunBoth(ResizeNode("linear", "half_pixel"), in), (std::vector<float>{0, 0.25f, 0.75f, 1}));
  EXPECT_EQ(RunBoth(ResizeNode("linear", "pytorch_half_pixel"), in), (std::vector<float>{0, 0.25f, 0.75f, 1}));
  // align_corners: x * (2 - 1) / (4 - 1).
  std::vector<float> ac = RunBoth(ResizeNode("linear", "align_corners"), in);
  ASSERT_EQ(ac.size(), 4u);
  EXPECT_NEAR(ac[1], 1.0f / 3, 1e-6f);
  EXPECT_NEAR(ac[2], 2.0f / 3, 1e-6f);
  // asymmetric: x / 2 = 0, 0.5, 1, 1.5.
  EXPECT_EQ(RunBoth(ResizeNode("linear", "asymmetric"), in), (std::vector<float>{0, 0.5f, 1, 1}));
}

TEST(Resize, NearestModesOnDownsampling) {
  // 4 -> 3, half_pixel: x_original = 1/6, 1.5, 17/6.
  const std::vector<Tensor> in = {F32({10, 20, 30, 40}, {1, 4}), Tensor(), Tensor(), I64({1, 3})};
  EXPECT_EQ(RunBoth(ResizeNode("nearest", "half_pixel", "round_prefer_floor"), in), (std::vector<float>{10, 20, 40}));
  EXPECT_EQ(RunBoth(ResizeNode("nearest", "half_pixel", "round_prefer_ceil"), in), (std::vector<float>{10, 30, 40}));
  EXPECT_EQ(RunBoth(ResizeNode("nearest", "half_pixel", "floor"), in), (std::vector<float>{10, 20, 30}));
  EXPECT_EQ(RunBoth(ResizeNode("nearest", "half_pixel", "ceil"), in), (std::vector<float>{20, 30, 40}));
}

TEST(Resize, TorchNearestUpsampleWithScales) {
  // torch's F.interpolate(mode="nearest", scale_factor=2): asymmetric + floor.
  Node node = test::MakeNode("Resize", {"x", "roi", "scales"}, {"y"});
  node.attrs.SetString("mode", "nearest");
  node.attrs.SetString("coordinate_transformation_mode", "asymmetric");
  node.attrs.SetString("nearest_mode", "floor");
  const std::vector<Tensor> in = {F32({1, 2, 3, 4}, {1, 1, 2, 2}), F32({}, {0}), F32({1, 1, 2, 2}, {4})};
  EXPECT_EQ(RunBoth(node, in, 11), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
}

TEST(Resize, TfCropAndResizeExtrapolates) {
  // roi [0.5, 1.5] of a 3-sample axis: x_original = 1 + x; 3 is outside [0, 2].
  Node node = test::MakeNode("Resize", {"x", "roi", "", "sizes"}, {"y"});
  node.attrs.SetString("mode", "linear");
  node.attrs.SetString("coordinate_transformation_mode", "tf_crop_and_resize");
  node.attrs.SetFloat("extrapolation_value", 9.0f);
  const std::vector<Tensor> in = {F32({1, 2, 3}, {3}), F32({0.5f, 1.5f}, {2}), Tensor(), I64({3})};
  EXPECT_EQ(RunBoth(node, in), (std::vector<float>{2, 3, 9}));
  // roi known only at run time.
  auto y = test::RunNodeWith(
      node, in, [](const NodeSignature& s) { return cpu::CreateResizeKernel(s, ResizeImpl::kAuto); },
      {true, false, true, true});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {2, 3, 9});
}

TEST(Resize, CubicKeepsConstantsAndMatchesReference) {
  Node node = ResizeNode("cubic", "half_pixel");
  Tensor c = F32(std::vector<float>(12, 2.5f), {1, 1, 3, 4});
  for (float v : RunBoth(node, {c, Tensor(), Tensor(), I64({1, 1, 7, 5})})) EXPECT_NEAR(v, 2.5f, 1e-6f);
  node.attrs.SetInt("exclude_outside", 1);
  node.attrs.SetFloat("cubic_coeff_a", -0.5f);
  RunBoth(node, {RandomTensor({1, 2, 5, 6}, 3), Tensor(), Tensor(), I64({1, 2, 9, 4})});
}

TEST(Resize, FastMatchesReferenceOnRandomCases) {
  struct Case {
    std::string mode, coord, nearest;
    Shape in, out;
  };
  const std::vector<Case> cases = {
      {"linear", "half_pixel", "", {1, 3, 4, 5, 6}, {1, 3, 8, 10, 12}},  // trilinear x2
      {"linear", "align_corners", "", {2, 2, 5, 4, 3}, {2, 2, 9, 7, 5}},
      {"linear", "pytorch_half_pixel", "", {1, 2, 9, 8}, {1, 2, 4, 3}},  // downsampling
      {"nearest", "asymmetric", "floor", {1, 2, 3, 4, 5}, {1, 2, 6, 8, 10}},
      {"nearest", "half_pixel", "round_prefer_ceil", {1, 3, 7, 6}, {1, 3, 5, 11}},
      {"nearest", "tf_half_pixel_for_nn", "round_prefer_floor", {1, 1, 5, 5}, {1, 1, 3, 8}},
      {"cubic", "align_corners", "", {1, 1, 6, 7}, {1, 1, 10, 4}},
      {"cubic", "asymmetric", "", {1, 1, 4, 4}, {1, 1, 8, 8}},
      {"linear", "half_pixel", "", {5}, {11}},
      {"linear", "half_pixel", "", {3, 4, 5}, {6, 2, 5}},  // N-D linear over every axis
  };
  uint32_t seed = 30;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.mode + " " + c.coord + " " + ShapeToString(c.in) + "->" + ShapeToString(c.out));
    RunBoth(ResizeNode(c.mode, c.coord, c.nearest), {RandomTensor(c.in, ++seed), Tensor(), Tensor(), I64(c.out)});
  }
}

TEST(Resize, NearestMovesAnyDtype) {
  Node node = ResizeNode("nearest", "asymmetric", "floor");
  Tensor x = Tensor::FromVector<uint8_t>({1, 2, 3}, {3}).value();
  auto y = test::RunNode(node, {x, Tensor(), Tensor(), I64({6})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  ASSERT_EQ((*y)[0].dtype(), DType::kU8);
  const uint8_t* v = (*y)[0].data<uint8_t>();
  EXPECT_EQ(std::vector<uint8_t>(v, v + 6), (std::vector<uint8_t>{1, 1, 2, 2, 3, 3}));
}

TEST(Upsample, ScalesAttributeAndInput) {
  // Upsample-7 (scales attribute) and -9 (scales input): nearest, asymmetric floor.
  Node node7 = test::MakeNode("Upsample", {"x"}, {"y"});
  node7.attrs.SetString("mode", "nearest");
  node7.attrs.SetFloats("scales", {1, 2});
  auto y = test::RunNode(node7, {F32({1, 2}, {1, 2})}, 7);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1, 1, 2, 2});
  Node node9 = test::MakeNode("Upsample", {"x", "s"}, {"y"});
  node9.attrs.SetString("mode", "linear");
  y = test::RunNode(node9, {F32({1, 2}, {1, 2}), F32({1, 2}, {2})}, 9);
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1, 1.5f, 2, 2});
}

TEST(Resize, Errors) {
  Node node = ResizeNode("linear", "half_pixel");
  EXPECT_FALSE(test::RunNode(node, {RandomTensor({1, 4}, 1), Tensor(), Tensor(), I64({1, 2, 3})}).ok());
  Node scales = test::MakeNode("Resize", {"x", "", "s"}, {"y"});
  EXPECT_FALSE(test::RunNode(scales, {RandomTensor({1, 4}, 1), Tensor(), F32({1, -2}, {2})}).ok());
  EXPECT_FALSE(test::RunNode(scales, {RandomTensor({1, 4}, 1), Tensor(), F32({1}, {1})}).ok());
  Node both = test::MakeNode("Resize", {"x", "", "s", "sizes"}, {"y"});
  EXPECT_FALSE(test::RunNode(both, {RandomTensor({1, 4}, 1), Tensor(), F32({1, 2}, {2}), I64({1, 8})}).ok());
  Node none = test::MakeNode("Resize", {"x"}, {"y"});
  EXPECT_FALSE(test::RunNode(none, {RandomTensor({1, 4}, 1)}).ok());
  node.attrs.SetString("mode", "area");
  EXPECT_FALSE(test::RunNode(node, {RandomTensor({1, 4}, 1), Tensor(), Tensor(), I64({1, 8})}).ok());
  node.attrs.SetString("mode", "linear");
  node.attrs.SetString("coordinate_transformation_mode", "diagonal");
  EXPECT_FALSE(test::RunNode(node, {RandomTensor({1, 4}, 1), Tensor(), Tensor(), I64({1, 8})}).ok());
  Node cubic10 = test::MakeNode("Resize", {"x", "s"}, {"y"});
  cubic10.attrs.SetString("mode", "cubic");
  EXPECT_FALSE(test::RunNode(cubic10, {RandomTensor({1, 4}, 1), F32({1, 2}, {2})}, 10).ok());
  // Linear interpolation of integers is not implemented.
  Tensor u8 = Tensor::FromVector<uint8_t>({1, 2}, {2}).value();
  auto r = test::RunNode(node, {u8, Tensor(), Tensor(), I64({4})});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace itkit
