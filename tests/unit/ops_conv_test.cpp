// Conv / ConvTranspose / itkit.FusedConv: hand-derived small cases, the oneDNN path
// against the reference loops on random shapes, and error cases.
#include <gtest/gtest.h>

#include <string>

#include "cpu/conv_kernels.h"
#include "kernel_test_util.h"
#include "op_test_util.h"

namespace itkit {
namespace {

using cpu::ConvImpl;
using test::F32;
using test::RandomTensor;

Tensor Iota(Shape shape) {
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = static_cast<float>(i);
  return t;
}
Tensor Ones(Shape shape) {
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = 1.0f;
  return t;
}

test::KernelMaker Maker(bool transpose, ConvImpl impl) {
  return [=](const NodeSignature& sig) { return cpu::CreateConvKernel(sig, transpose, impl); };
}

// Runs the node through the reference and the oneDNN kernel (weights constant, and
// weights passed at run time) and checks all agree.
void ExpectBothImplsAgree(const Node& node, const std::vector<Tensor>& inputs, bool transpose) {
  auto ref = test::RunNodeWith(node, inputs, Maker(transpose, ConvImpl::kReference));
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  auto fast = test::RunNodeWith(node, inputs, Maker(transpose, ConvImpl::kOnednn));
  ASSERT_TRUE(fast.ok()) << fast.status().ToString();
  test::ExpectClose((*fast)[0], (*ref)[0], 1e-4f, 1e-4f);
  auto runtime_w = test::RunNodeWith(node, inputs, Maker(transpose, ConvImpl::kOnednn), {false, false, false});
  ASSERT_TRUE(runtime_w.ok()) << runtime_w.status().ToString();
  test::ExpectClose((*runtime_w)[0], (*ref)[0], 1e-4f, 1e-4f);
  // The backend's own choice as well (what sessions run).
  auto chosen = test::RunNode(node, inputs);
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  test::ExpectClose((*chosen)[0], (*ref)[0], 1e-4f, 1e-4f);
}

TEST(Conv, PaddedAndUnpadded3x3) {
  Node node = test::MakeNode("Conv", {"x", "w"}, {"y"});
  node.attrs.SetInts("pads", {1, 1, 1, 1});
  // ONNX's documented example: 5x5 ramp, 3x3 ones.
  auto y = test::RunNode(node, {Iota({1, 1, 5, 5}), Ones({1, 1, 3, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108, 117, 81,
                               93, 144, 153, 162, 111, 72, 111, 117, 123, 84});
  node.attrs.Erase("pads");
  y = test::RunNode(node, {Iota({1, 1, 5, 5}), Ones({1, 1, 3, 3})});
  ASSERT_TRUE(y.ok());
  EXPECT_EQ((*y)[0].shape(), (Shape{1, 1, 3, 3}));
  test::ExpectValues((*y)[0], {54, 63, 72, 99, 108, 117, 144, 153, 162});
}

TEST(Conv, StridesWithAsymmetricPadding) {
  Node node = test::MakeNode("Conv", {"x", "w"}, {"y"});
  node.attrs.SetInts("strides", {2, 2});
  node.attrs.SetInts("pads", {1, 0, 1, 0});
  auto y = test::RunNode(node, {Iota({1, 1, 7, 5}), Ones({1, 1, 3, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ((*y)[0].shape(), (Shape{1, 1, 4, 2}));
  test::ExpectValues((*y)[0], {21, 33, 99, 117, 189, 207, 171, 183});
}

TEST(Conv, AutoPadSameUpperAndLower) {
  // 1-D, 4 samples, kernel 2, stride 1: total padding 1 goes to the end (UPPER) or
  // the start (LOWER).
  Node node = test::MakeNode("Conv", {"x", "w"}, {"y"});
  node.attrs.SetString("auto_pad", "SAME_UPPER");
  const Tensor x = F32({1, 2, 3, 4}, {1, 1, 4});
  const Tensor w = F32({1, 10}, {1, 1, 2});
  auto y = test::RunNode(node, {x, w});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {21, 32, 43, 4});
  node.attrs.SetString("auto_pad", "SAME_LOWER");
  y = test::RunNode(node, {x, w});
  ASSERT_TRUE(y.ok());
  test::ExpectValues((*y)[0], {10, 21, 32, 43});
}

TEST(Conv, GroupsAndBias) {
  // Two groups of one channel each (depthwise), kernel 1: y_c = w_c * x_c + b_c.
  Node node = test::MakeNode("Conv", {"x", "w", "b"}, {"y"});
  node.attrs.SetInt("group", 2);
  auto y = test::RunNode(node, {F32({1, 2, 3, 4}, {1, 2, 2}), F32({10, 100}, {2, 1, 1}), F32({0.5f, -1}, {2})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {10.5f, 20.5f, 299, 399});
}

TEST(FusedConv, ActivationAfterBias) {
  // conv([1,-2,3] padded at the end, [1,1]) = [-1, 1, 3]; + bias -1 = [-2, 0, 2].
  Node node = test::MakeNode("FusedConv", {"x", "w", "b"}, {"y"}, kItkitDomain);
  node.attrs.SetInts("pads", {0, 1});
  const std::vector<Tensor> in = {F32({1, -2, 3}, {1, 1, 3}), F32({1, 1}, {1, 1, 2}), F32({-1}, {1})};
  const std::vector<std::pair<std::string, std::vector<float>>> cases = {
      {"", {-2, 0, 2}},
      {"Relu", {0, 0, 2}},
      {"LeakyRelu", {-0.2f, 0, 2}},
      {"Sigmoid", {0.11920292f, 0.5f, 0.88079708f}},
      {"Tanh", {-0.96402758f, 0, 0.96402758f}},
      {"Gelu", {-0.04550026f, 0, 1.95449974f}},
  };
  for (const auto& [act, expected] : cases) {
    node.attrs.SetString("activation", act);
    node.attrs.SetFloat("alpha", 0.1f);
    for (ConvImpl impl : {ConvImpl::kReference, ConvImpl::kOnednn}) {
      auto y = test::RunNodeWith(node, in, Maker(false, impl));
      ASSERT_TRUE(y.ok()) << act << ": " << y.status().ToString();
      test::ExpectValues((*y)[0], expected, 1e-5f);
    }
  }
}

TEST(ConvTranspose, OneDimensional) {
  // Each input sample spreads over three outputs: [0,1,2] * [1,1,1] -> [0,1,3,3,2].
  Node node = test::MakeNode("ConvTranspose", {"x", "w"}, {"y"});
  auto y = test::RunNode(node, {F32({0, 1, 2}, {1, 1, 3}), Ones({1, 2, 3})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  EXPECT_EQ((*y)[0].shape(), (Shape{1, 2, 5}));
  test::ExpectValues((*y)[0], {0, 1, 3, 3, 2, 0, 1, 3, 3, 2});
}

TEST(ConvTranspose, Stride2Kernel2UpsamplesBlocks) {
  // The U-Net's upsampling: every input pixel becomes a 2x2 block w * x (+ bias).
  Node node = test::MakeNode("ConvTranspose", {"x", "w", "b"}, {"y"});
  node.attrs.SetInts("strides", {2, 2});
  const std::vector<Tensor> in = {F32({1, 2, 3, 4}, {1, 1, 2, 2}), F32({1, 10, 100, 1000}, {1, 1, 2, 2}),
                                  F32({0.5f}, {1})};
  for (ConvImpl impl : {ConvImpl::kReference, ConvImpl::kOnednn}) {
    auto y = test::RunNodeWith(node, in, Maker(true, impl));
    ASSERT_TRUE(y.ok()) << y.status().ToString();
    test::ExpectValues((*y)[0], {1.5f, 10.5f, 2.5f, 20.5f, 100.5f, 1000.5f, 200.5f, 2000.5f,
                                 3.5f, 30.5f, 4.5f, 40.5f, 300.5f, 3000.5f, 400.5f, 4000.5f});
  }
}

TEST(ConvTranspose, OutputPaddingAndOutputShape) {
  // [1,2] stride 2 kernel 1 -> [1,0,2] (+1 zero of output_padding) = [1,0,2,0].
  Node node = test::MakeNode("ConvTranspose", {"x", "w"}, {"y"});
  node.attrs.SetInts("strides", {2});
  node.attrs.SetInts("output_padding", {1});
  auto y = test::RunNode(node, {F32({1, 2}, {1, 1, 2}), Ones({1, 1, 1})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1, 0, 2, 0});
  // output_shape 5 = full extent 3 extended by 2 at the end.
  node.attrs.Erase("output_padding");
  node.attrs.SetInts("output_shape", {5});
  y = test::RunNode(node, {F32({1, 2}, {1, 1, 2}), Ones({1, 1, 1})});
  ASSERT_TRUE(y.ok()) << y.status().ToString();
  test::ExpectValues((*y)[0], {1, 0, 2, 0, 0});
}

struct ConvCase {
  Shape x, w;
  int64_t group = 1;
  std::vector<int64_t> strides, dilations, pads, output_padding;
  std::string auto_pad;
  bool bias = true;
  std::string activation;  // FusedConv when set
};

Node MakeConvNode(const ConvCase& c, bool transpose) {
  const bool fused = !c.activation.empty();
  Node node = test::MakeNode(transpose ? "ConvTranspose" : (fused ? "FusedConv" : "Conv"),
                             c.bias ? std::vector<std::string>{"x", "w", "b"} : std::vector<std::string>{"x", "w"},
                             {"y"}, fused ? kItkitDomain : "");
  node.attrs.SetInt("group", c.group);
  if (!c.strides.empty()) node.attrs.SetInts("strides", c.strides);
  if (!c.dilations.empty()) node.attrs.SetInts("dilations", c.dilations);
  if (!c.pads.empty()) node.attrs.SetInts("pads", c.pads);
  if (!c.output_padding.empty()) node.attrs.SetInts("output_padding", c.output_padding);
  if (!c.auto_pad.empty()) node.attrs.SetString("auto_pad", c.auto_pad);
  if (fused) {
    node.attrs.SetString("activation", c.activation);
    node.attrs.SetFloat("alpha", 0.05f);
  }
  return node;
}

std::vector<Tensor> RandomInputs(const ConvCase& c, int64_t out_channels, uint32_t seed) {
  std::vector<Tensor> in = {RandomTensor(c.x, seed), RandomTensor(c.w, seed + 1)};
  if (c.bias) in.push_back(RandomTensor({out_channels}, seed + 2));
  return in;
}

TEST(Conv, OnednnMatchesReferenceOnRandomCases) {
  const std::vector<ConvCase> cases = {
      // x, w, group, strides, dilations, pads, output_padding, auto_pad, bias, activation
      {{2, 3, 17}, {5, 3, 3}, 1, {2}, {}, {1, 0}},                                           // 1-D, asym pads
      {{1, 4, 9}, {4, 1, 5}, 4, {1}, {2}, {4, 4}},                                           // 1-D depthwise dilated
      {{1, 3, 11, 9}, {8, 3, 3, 3}, 1, {1, 1}, {}, {1, 1, 1, 1}, {}, "", true, "LeakyRelu"},  // 2-D fused
      {{2, 6, 10, 7}, {9, 2, 3, 2}, 3, {2, 1}, {1, 2}, {0, 1, 2, 0}},                         // groups, dilation
      {{1, 8, 12, 12}, {8, 1, 3, 3}, 8, {2, 2}, {}, {}, {}, "SAME_UPPER"},                    // depthwise SAME
      {{1, 5, 7, 8}, {6, 5, 4, 3}, 1, {3, 2}, {}, {}, {}, "SAME_LOWER", false},               // even kernel
      {{1, 5, 9, 9}, {4, 5, 3, 3}, 1, {1, 1}, {}, {}, {}, "VALID", true, "Relu"},
      {{1, 1, 12, 10, 9}, {8, 1, 3, 3, 3}, 1, {1, 1, 1}, {}, {1, 1, 1, 1, 1, 1}},              // first U-Net conv
      {{1, 16, 8, 9, 10}, {16, 16, 3, 3, 3}, 1, {1, 1, 1}, {}, {1, 1, 1, 1, 1, 1}, {}, "", true, "LeakyRelu"},
      {{1, 16, 9, 8, 7}, {24, 16, 3, 3, 3}, 1, {2, 2, 2}, {}, {1, 1, 1, 1, 1, 1}},              // stride-2 down
      {{2, 12, 6, 7, 8}, {12, 4, 3, 1, 2}, 3, {1, 2, 1}, {2, 1, 1}, {2, 0, 1, 1, 0, 1}, {}, "", true, "Sigmoid"},
      {{1, 7, 5, 6, 5}, {3, 7, 1, 1, 1}, 1, {}, {}, {}, {}, "", true, "Tanh"},                 // 1x1x1 head
  };
  uint32_t seed = 100;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(ShapeToString(c.x) + " * " + ShapeToString(c.w));
    ExpectBothImplsAgree(MakeConvNode(c, false), RandomInputs(c, c.w[0], seed += 10), false);
  }
}

TEST(ConvTranspose, OnednnMatchesReferenceOnRandomCases) {
  const std::vector<ConvCase> cases = {
      {{1, 3, 7}, {3, 2, 3}, 1, {2}, {}, {1, 0}, {}, "", true},
      {{2, 4, 5, 6}, {4, 3, 3, 3}, 2, {2, 2}, {}, {1, 1, 1, 1}, {1, 1}},          // groups, output_padding
      {{1, 3, 5, 5}, {3, 2, 3, 2}, 1, {2, 3}, {2, 1}, {0, 1, 1, 0}, {1, 0}},      // dilation + output_padding
      {{1, 4, 4, 5}, {4, 1, 2, 2}, 4, {2, 2}, {}, {}, {}, "SAME_UPPER"},          // depthwise SAME
      {{1, 16, 4, 5, 6}, {16, 8, 2, 2, 2}, 1, {2, 2, 2}, {}, {}},                  // U-Net upsampling
      {{1, 6, 3, 4, 3}, {6, 3, 3, 3, 3}, 2, {2, 1, 2}, {1, 1, 2}, {1, 0, 1, 0, 1, 1}, {1, 0, 1}},
  };
  uint32_t seed = 500;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(ShapeToString(c.x) + " * " + ShapeToString(c.w));
    ExpectBothImplsAgree(MakeConvNode(c, true), RandomInputs(c, c.w[1] * c.group, seed += 10), true);
  }
}

TEST(ConvTranspose, GemmPathMatchesReference) {
  // kernel == stride, no padding: every input voxel owns a disjoint output block.
  const std::vector<ConvCase> cases = {
      {{2, 3, 5}, {3, 4, 3}, 1, {3}, {}, {}},
      {{1, 5, 4, 7}, {5, 6, 2, 2}, 1, {2, 2}, {}, {}, {}, "", false},
      {{2, 16, 3, 4, 5}, {16, 8, 2, 2, 2}, 1, {2, 2, 2}, {}, {}},    // U-Net upsampling
      {{1, 7, 3, 70, 33}, {7, 3, 2, 1, 3}, 1, {2, 1, 3}, {}, {}},    // uneven, > 1 chunk
      {{1, 40, 2, 2, 2}, {40, 33, 2, 2, 2}, 1, {2, 2, 2}, {}, {}},   // deep: channel blocks
  };
  uint32_t seed = 900;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(ShapeToString(c.x) + " * " + ShapeToString(c.w));
    const Node node = MakeConvNode(c, true);
    const std::vector<Tensor> in = RandomInputs(c, c.w[1], seed += 10);
    auto ref = test::RunNodeWith(node, in, Maker(true, ConvImpl::kReference));
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    auto gemm = test::RunNodeWith(node, in, Maker(true, ConvImpl::kGemm));
    ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
    test::ExpectClose((*gemm)[0], (*ref)[0], 1e-4f, 1e-4f);
    auto single = test::RunNodeWith(node, in, Maker(true, ConvImpl::kGemm), {}, 17, /*threads=*/1);
    ASSERT_TRUE(single.ok()) << single.status().ToString();
    test::ExpectClose((*single)[0], (*ref)[0], 1e-4f, 1e-4f);
  }
  // Not applicable with padding: the caller must get an error, not wrong values.
  ConvCase padded{{1, 2, 4}, {2, 2, 2}, 1, {2}, {}, {1, 0}};
  EXPECT_FALSE(test::RunNodeWith(MakeConvNode(padded, true), RandomInputs(padded, 2, 1),
                                 Maker(true, ConvImpl::kGemm))
                   .ok());
}

TEST(Conv, PointwiseGemmPathMatchesReference) {
  const std::vector<ConvCase> cases = {
      {{2, 5, 300}, {7, 5, 1}, 1, {}, {}, {}},
      {{1, 32, 9, 70}, {3, 32, 1, 1}, 1, {}, {}, {}, {}, "", false},
      {{2, 6, 5, 40, 33}, {4, 6, 1, 1, 1}, 1, {}, {}, {}, {}, "", true, "LeakyRelu"},
      {{1, 16, 3, 3, 3}, {640, 16, 1, 1, 1}, 1, {}, {}, {}},  // wide: small chunks
  };
  uint32_t seed = 1300;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(ShapeToString(c.x) + " * " + ShapeToString(c.w));
    const Node node = MakeConvNode(c, false);
    const std::vector<Tensor> in = RandomInputs(c, c.w[0], seed += 10);
    auto ref = test::RunNodeWith(node, in, Maker(false, ConvImpl::kReference));
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    auto gemm = test::RunNodeWith(node, in, Maker(false, ConvImpl::kGemm));
    ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
    test::ExpectClose((*gemm)[0], (*ref)[0], 1e-4f, 1e-4f);
  }
  ConvCase strided{{1, 2, 4}, {2, 2, 1}, 1, {2}, {}, {}};
  EXPECT_FALSE(test::RunNodeWith(MakeConvNode(strided, false), RandomInputs(strided, 2, 1),
                                 Maker(false, ConvImpl::kGemm))
                   .ok());
}

TEST(Conv, Errors) {
  Node node = test::MakeNode("Conv", {"x", "w"}, {"y"});
  // Channel mismatch.
  auto r = test::RunNode(node, {RandomTensor({1, 3, 5, 5}, 1), RandomTensor({2, 2, 3, 3}, 2)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("Conv_test"), std::string::npos) << r.status().message();
  // Kernel larger than the padded input.
  r = test::RunNode(node, {RandomTensor({1, 1, 2, 2}, 1), RandomTensor({1, 1, 3, 3}, 2)});
  EXPECT_FALSE(r.ok()) << (r.ok() ? ShapeToString((*r)[0].shape()) : "");
  // Bad auto_pad / group.
  node.attrs.SetString("auto_pad", "SAME_MIDDLE");
  r = test::RunNode(node, {RandomTensor({1, 1, 4, 4}, 1), RandomTensor({1, 1, 3, 3}, 2)});
  EXPECT_FALSE(r.ok());
  node.attrs.Erase("auto_pad");
  node.attrs.SetInt("group", 2);
  r = test::RunNode(node, {RandomTensor({1, 3, 4, 4}, 1), RandomTensor({1, 3, 3, 3}, 2)});
  EXPECT_FALSE(r.ok());
  node.attrs.Erase("group");
  // Wrong number of pads, bias shape.
  node.attrs.SetInts("pads", {1, 1});
  r = test::RunNode(node, {RandomTensor({1, 1, 4, 4}, 1), RandomTensor({1, 1, 3, 3}, 2)});
  EXPECT_FALSE(r.ok());
  node.attrs.Erase("pads");
  Node with_bias = test::MakeNode("Conv", {"x", "w", "b"}, {"y"});
  r = test::RunNode(with_bias, {RandomTensor({1, 1, 4, 4}, 1), RandomTensor({2, 1, 3, 3}, 2), RandomTensor({3}, 3)});
  EXPECT_FALSE(r.ok());
  // f16 is valid ONNX but not implemented on the CPU.
  Tensor h = Tensor::Allocate(DType::kF16, {1, 1, 4, 4}).value();
  Tensor hw = Tensor::Allocate(DType::kF16, {1, 1, 3, 3}).value();
  r = test::RunNode(node, {h, hw});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  // Unknown fused activation.
  Node fused = test::MakeNode("FusedConv", {"x", "w"}, {"y"}, kItkitDomain);
  fused.attrs.SetString("activation", "Swish");
  r = test::RunNode(fused, {RandomTensor({1, 1, 4, 4}, 1), RandomTensor({1, 1, 3, 3}, 2)});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace itkit
