// The fusion passes fuse_norm_residual, fuse_elementwise and drop_conv_bias_before_norm
// on hand-built graphs: what they match and what they leave alone, and the fused graphs'
// outputs against the same graphs with the fusions (or every pass) disabled
// (SessionOptions::disabled_passes) and against hand-derived values. (PyTorch
// references: the zoo's op_resenc_block / mednext cases.)
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "itkit/fused_elementwise.h"
#include "itkit/passes.h"
#include "itkit/session.h"
#include "graph_test_util.h"

namespace itkit {
namespace {

using test::Dims;
using test::EveryPass;
using test::RelativeError;
using test::Random;
using test::RunModel;
using Builder = test::GraphBuilder;

const std::vector<std::string> kAllFusions = {"fuse_norm_activation", "fuse_norm_residual",
                                              "drop_conv_bias_before_norm", "fuse_conv_activation",
                                              "fuse_elementwise"};

Tensor Scalar(float v) { return Tensor::FromVector(std::vector<float>{v}, {}).value(); }

std::vector<const Node*> NodesOf(const Session& s, const std::string& op) {
  std::vector<const Node*> out;
  for (const Node& n : s.model().graph.nodes)
    if (n.op_type == op) out.push_back(&n);
  return out;
}

// ---- fuse_norm_residual ---------------------------------------------------------------

struct ResidualSpec {
  bool skip_first = false;          // Add(skip, norm) instead of Add(norm, skip)
  std::string act = "LeakyRelu";    // "" = the Add is the output
  std::string skip = "x";           // value added: "x", "pooled" (broadcasts), "const" (constant), "other"
  bool norm_also_output = false;    // the norm's output has a second reader
  bool add_also_output = false;     // the Add's output has a second reader (the activation then stays)
  bool preact = false;              // norm -> act -> Add (another function: not fused)
  std::vector<Dim> x_dims = {Dim{-1, "N"}, Dim{4, ""}, Dim{-1, "D"}, Dim{-1, "H"}, Dim{5, ""}};
  std::vector<Dim> other_dims = {};
};

// nnU-Net ResEnc basic block: conv-IN-lrelu-conv-IN (+ skip) -> act.
Model ResidualBlock(const ResidualSpec& sp, uint32_t seed = 3) {
  std::mt19937 rng(seed);
  Builder b;
  b.Input("x", sp.x_dims);
  for (int k = 1; k <= 2; ++k) {
    const std::string c = std::to_string(k);
    b.g().initializers["w" + c] = Random({4, 4, 3, 3, 3}, rng, -0.2f, 0.2f);
    b.g().initializers["cb" + c] = Random({4}, rng, -0.2f, 0.2f);
    b.g().initializers["s" + c] = Random({4}, rng, 0.5f, 1.5f);
    b.g().initializers["t" + c] = Random({4}, rng, -0.3f, 0.3f);
  }
  auto conv = [&](const std::string& in, const std::string& c, const std::string& out) {
    Node& n = b.Add("Conv", {in, "w" + c, "cb" + c}, out);
    n.attrs.SetInts("kernel_shape", {3, 3, 3});
    n.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  };
  conv("x", "1", "c1");
  b.Add("InstanceNormalization", {"c1", "s1", "t1"}, "n1");
  b.Add("LeakyRelu", {"n1"}, "a1").attrs.SetFloat("alpha", 0.01f);
  conv("a1", "2", "c2");
  b.Add("InstanceNormalization", {"c2", "s2", "t2"}, "n2");
  std::string norm_out = "n2";
  if (sp.preact) {
    b.Add("Relu", {"n2"}, "n2r");
    norm_out = "n2r";
  }
  std::string skip = "x";
  if (sp.skip == "pooled") {
    b.Add("GlobalAveragePool", {"x"}, "pooled");
    skip = "pooled";
  } else if (sp.skip == "const") {
    b.g().initializers["k"] = Random({1, 4, 1, 1, 1}, rng);
    skip = "k";
  } else if (sp.skip == "other") {
    b.Input("other", sp.other_dims);
    skip = "other";
  }
  b.Add("Add", sp.skip_first ? std::vector<std::string>{skip, norm_out} : std::vector<std::string>{norm_out, skip},
        "sum");
  if (sp.act.empty()) {
    b.Output("sum");
  } else {
    Node& act = b.Add(sp.act, {"sum"}, "y");
    if (sp.act == "LeakyRelu") act.attrs.SetFloat("alpha", 0.02f);
    b.Output("y");
    if (sp.add_also_output) b.Output("sum");
  }
  if (sp.norm_also_output) b.Output("n2");
  return b.m;
}

// The GroupNorm nodes with a residual input.
std::vector<const Node*> ResidualNorms(const Session& s) {
  std::vector<const Node*> out;
  for (const Node* n : NodesOf(s, "GroupNorm"))
    if (n->inputs.size() == 4) out.push_back(n);
  return out;
}

TEST(FuseNormResidual, FusesAddAndActivationInEitherOperandOrder) {
  for (bool skip_first : {false, true}) {
    SCOPED_TRACE(skip_first ? "Add(skip, norm)" : "Add(norm, skip)");
    ResidualSpec sp;
    sp.skip_first = skip_first;
    auto s = Session::Create(ResidualBlock(sp));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const auto fused = ResidualNorms(**s);
    ASSERT_EQ(fused.size(), 1u);
    EXPECT_EQ(fused[0]->inputs[3], "x");
    EXPECT_EQ(fused[0]->outputs[0], "y");
    EXPECT_EQ(fused[0]->attrs.GetString("activation", ""), "LeakyRelu");
    EXPECT_FLOAT_EQ(fused[0]->attrs.GetFloat("alpha", 0.0f), 0.02f);
    EXPECT_TRUE(NodesOf(**s, "Add").empty());
    EXPECT_TRUE(NodesOf(**s, "LeakyRelu").empty());
    EXPECT_TRUE(NodesOf(**s, "FusedElementwise").empty()) << "Add + LeakyRelu must go to the norm";
    // The first norm keeps its own LeakyRelu (fuse_norm_activation) and no residual.
    const auto norms = NodesOf(**s, "GroupNorm");
    ASSERT_EQ(norms.size(), 2u);
    const auto& applied = (*s)->applied_passes();
    EXPECT_NE(std::find(applied.begin(), applied.end(), "fuse_norm_residual"), applied.end());
  }
}

TEST(FuseNormResidual, WithoutActivationAndWithASecondReaderOfTheSum) {
  ResidualSpec plain;
  plain.act = "";
  auto s = Session::Create(ResidualBlock(plain));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto fused = ResidualNorms(**s);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0]->attrs.GetString("activation", ""), "");
  EXPECT_EQ(fused[0]->outputs[0], "sum");

  ResidualSpec two;  // the sum is also a graph output: the activation stays separate
  two.add_also_output = true;
  s = Session::Create(ResidualBlock(two));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  fused = ResidualNorms(**s);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0]->attrs.GetString("activation", ""), "");
  EXPECT_EQ(NodesOf(**s, "LeakyRelu").size(), 1u);
}

TEST(FuseNormResidual, LeavesNonFusableVariantsAlone) {
  struct Variant {
    const char* what;
    ResidualSpec sp;
  };
  std::vector<Variant> variants;
  {
    ResidualSpec sp;
    sp.norm_also_output = true;
    variants.push_back({"norm output read twice", sp});
  }
  {
    ResidualSpec sp;
    sp.skip = "pooled";
    variants.push_back({"broadcasting residual [N,C,1,1,1]", sp});
  }
  {
    ResidualSpec sp;
    sp.skip = "const";
    variants.push_back({"constant residual", sp});
  }
  {
    ResidualSpec sp;
    sp.skip = "other";
    sp.other_dims = {Dim{-1, "N"}, Dim{4, ""}, Dim{1, ""}, Dim{-1, "H"}, Dim{5, ""}};
    variants.push_back({"residual broadcasting along D", sp});
  }
  {
    ResidualSpec sp;
    sp.skip = "other";
    sp.other_dims = {Dim{-1, "N"}, Dim{4, ""}, Dim{-1, "A"}, Dim{-1, "B"}, Dim{5, ""}};
    variants.push_back({"residual with other (unprovable) dims", sp});
  }
  {
    ResidualSpec sp;
    sp.preact = true;
    variants.push_back({"norm -> Relu -> Add", sp});
  }
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    auto s = Session::Create(ResidualBlock(v.sp));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(ResidualNorms(**s).empty());
    const auto& applied = (*s)->applied_passes();
    EXPECT_EQ(std::find(applied.begin(), applied.end(), "fuse_norm_residual"), applied.end());
  }
}

TEST(FuseNormResidual, MatchesTheUnfusedGraph) {
  std::mt19937 rng(11);
  struct Variant {
    const char* what;
    ResidualSpec sp;
    std::vector<Tensor> inputs;
  };
  const Tensor x = Random({2, 4, 6, 5, 5}, rng);
  std::vector<Variant> variants;
  for (const char* act : {"LeakyRelu", "Relu", "Sigmoid", "Tanh", ""}) {
    ResidualSpec sp;
    sp.act = act;
    sp.skip_first = act[0] == 'R';
    variants.push_back({act, sp, {x}});
  }
  {
    ResidualSpec sp;  // not fused: must still compute the same
    sp.skip = "other";
    sp.other_dims = Dims({2, 4, 1, 5, 5});
    variants.push_back({"broadcast residual", sp, {x, Random({2, 4, 1, 5, 5}, rng)}});
  }
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    const Model model = ResidualBlock(v.sp);
    const std::vector<Tensor> fused = RunModel(model, v.inputs);
    const std::vector<Tensor> plain = RunModel(model, v.inputs, kAllFusions);
    ASSERT_EQ(fused.size(), plain.size());
    ASSERT_FALSE(fused.empty());
    for (size_t i = 0; i < fused.size(); ++i) EXPECT_LT(RelativeError(fused[i], plain[i]), 2e-6);
  }
}

// A decoder step: the residual is added to the norm of a ConvTranspose upsampling.
// The pass must know the upsampled shape: numeric with static input dims (k 2, stride 2,
// and k 3, stride 2, pads 1, output_padding 1: 3 -> 6 either way), and, with symbolic
// dims, equal to a second upsampling of the same value.
TEST(FuseNormResidual, SeesThroughConvTransposeShapes) {
  struct Variant {
    const char* what;
    std::vector<Dim> x_dims;
    bool skip_is_upsampled;  // else a graph input [2, 4, 6, 8, 10]
    std::vector<int64_t> kernel, pads, output_padding;
  };
  const std::vector<Variant> variants = {
      {"static, k2 s2", Dims({2, 8, 3, 4, 5}), false, {2, 2, 2}, {}, {}},
      {"static, k3 s2 p1 op1", Dims({2, 8, 3, 4, 5}), false, {3, 3, 3}, {1, 1, 1, 1, 1, 1}, {1, 1, 1}},
      {"symbolic, both upsampled", {Dim{-1, "N"}, Dim{8, ""}, Dim{-1, "D"}, Dim{-1, "H"}, Dim{5, ""}}, true,
       {2, 2, 2}, {}, {}},
  };
  std::mt19937 rng(5);
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    Builder b;
    b.Input("x", v.x_dims);
    const int64_t k = v.kernel[0];
    b.g().initializers["wu"] = Random({8, 4, k, k, k}, rng, -0.3f, 0.3f);
    b.g().initializers["ws"] = Random({8, 4, k, k, k}, rng, -0.3f, 0.3f);
    b.g().initializers["s"] = Random({4}, rng, 0.5f, 1.5f);
    b.g().initializers["t"] = Random({4}, rng, -0.3f, 0.3f);
    auto up = [&](const std::string& w, const std::string& out) {
      Node& n = b.Add("ConvTranspose", {"x", w}, out);
      n.attrs.SetInts("strides", {2, 2, 2});
      if (!v.pads.empty()) n.attrs.SetInts("pads", v.pads);
      if (!v.output_padding.empty()) n.attrs.SetInts("output_padding", v.output_padding);
    };
    up("wu", "up");
    std::string skip = "skip";
    if (v.skip_is_upsampled) {
      up("ws", "skip");
    } else {
      b.Input("skip", Dims({2, 4, 6, 8, 10}));
    }
    b.Add("InstanceNormalization", {"up", "s", "t"}, "n");
    b.Add("Add", {"n", skip}, "sum");
    b.Add("LeakyRelu", {"sum"}, "y").attrs.SetFloat("alpha", 0.01f);
    b.Output("y");
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const auto fused = ResidualNorms(**s);
    ASSERT_EQ(fused.size(), 1u) << "the norm and the residual Add should be one node";
    EXPECT_EQ(fused[0]->inputs[3], skip);
    // And it computes what the unfused graph does.
    std::vector<Tensor> inputs = {Random({2, 8, 3, 4, 5}, rng)};
    if (!v.skip_is_upsampled) inputs.push_back(Random({2, 4, 6, 8, 10}, rng));
    const std::vector<Tensor> got = RunModel(b.m, inputs);
    const std::vector<Tensor> plain = RunModel(b.m, inputs, kAllFusions);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].shape(), (Shape{2, 4, 6, 8, 10}));
    EXPECT_LT(RelativeError(got[0], plain[0]), 2e-6);
  }
}

// ---- drop_conv_bias_before_norm --------------------------------------------------------

struct ConvNormSpec {
  std::string conv = "Conv";                   // or "ConvTranspose" (group 2), "FusedConv" (itkit)
  std::string fused_act;                       // FusedConv's `activation` ("" = none)
  std::string norm = "InstanceNormalization";  // or "GroupNorm" (itkit)
  int64_t groups = 6;                          // GroupNorm's num_groups (6 = one channel each)
  std::string between;                         // an activation between conv and norm
  bool second_reader = false;                  // a Sigmoid (second graph output) also reads the conv
  bool conv_is_output = false;                 // the conv output is also a graph output
};

// x [N,4,D,H,W] -> conv (6 output channels, with bias) [-> act] -> norm -> y.
Model ConvNormModel(const ConvNormSpec& sp, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  Builder b;
  b.Input("x", {Dim{-1, "N"}, Dim{4, ""}, Dim{-1, "D"}, Dim{-1, "H"}, Dim{-1, "W"}});
  const bool transpose = sp.conv == "ConvTranspose";
  // ConvTranspose's W is [C_in, C_out / group, k...]: 3 x group 2 = 6 channels, neither
  // dim being 6, so the pass must read C as dim 1 x group.
  b.g().initializers["w"] =
      transpose ? Random({4, 3, 3, 3, 3}, rng, -0.3f, 0.3f) : Random({6, 4, 3, 3, 3}, rng, -0.3f, 0.3f);
  // Large against the conv's spread: dropping it where it matters shows in the output.
  b.g().initializers["cb"] = Random({6}, rng, -2.0f, 2.0f);
  b.g().initializers["s"] = Random({6}, rng, 0.5f, 1.5f);
  b.g().initializers["t"] = Random({6}, rng, -0.3f, 0.3f);
  Node& conv = b.Add(sp.conv, {"x", "w", "cb"}, "c");
  conv.attrs.SetInts("kernel_shape", {3, 3, 3});
  conv.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  if (transpose) conv.attrs.SetInt("group", 2);
  if (sp.conv == "FusedConv") {
    conv.domain = kItkitDomain;
    conv.attrs.SetString("activation", sp.fused_act);
  }
  std::string norm_in = "c";
  if (!sp.between.empty()) {
    Node& act = b.Add(sp.between, {"c"}, "a");
    if (sp.between == "LeakyRelu") act.attrs.SetFloat("alpha", 0.1f);
    norm_in = "a";
  }
  Node& norm = b.Add(sp.norm, {norm_in, "s", "t"}, "y");
  if (sp.norm == "GroupNorm") {
    norm.domain = kItkitDomain;
    norm.attrs.SetInt("num_groups", sp.groups);
  }
  b.Output("y");
  if (sp.second_reader) {
    b.Add("Sigmoid", {"c"}, "z");
    b.Output("z");
  }
  if (sp.conv_is_output) b.Output("c");
  return b.m;
}

// The one conv-family node of the session's graph.
const Node* ConvOf(const Session& s) {
  const Node* found = nullptr;
  for (const Node& n : s.model().graph.nodes) {
    if (n.op_type != "Conv" && n.op_type != "ConvTranspose" && n.op_type != "FusedConv") continue;
    EXPECT_EQ(found, nullptr) << "more than one conv";
    found = &n;
  }
  EXPECT_NE(found, nullptr);
  return found;
}

bool AppliedPass(const Session& s, const std::string& pass) {
  const auto& a = s.applied_passes();
  return std::find(a.begin(), a.end(), pass) != a.end();
}

// Runs the model with the default passes and with every pass disabled (the graph as
// built, on the reference kernels' path); the outputs must agree.
void ExpectSameAsUnoptimised(const Model& model, std::mt19937& rng) {
  const std::vector<Tensor> in = {Random({2, 4, 5, 6, 4}, rng)};
  const std::vector<Tensor> optimised = RunModel(model, in);
  const std::vector<Tensor> plain = RunModel(model, in, EveryPass());
  ASSERT_EQ(optimised.size(), model.graph.outputs.size());
  ASSERT_EQ(plain.size(), optimised.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_LT(RelativeError(optimised[i], plain[i]), 1e-5) << "output " << i;
}

TEST(DropConvBiasBeforeNorm, DropsTheBiasBeforeAPerChannelNorm) {
  struct Variant {
    const char* what;
    ConvNormSpec sp;
    std::vector<std::string> disabled;
  };
  std::vector<Variant> variants;
  variants.push_back({"Conv -> InstanceNorm (a GroupNorm(C) by then)", {}, {}});
  variants.push_back({"Conv -> InstanceNorm kept as InstanceNormalization", {}, {"fuse_norm_activation"}});
  {
    ConvNormSpec sp;
    sp.norm = "GroupNorm";
    variants.push_back({"Conv -> GroupNorm(num_groups = C)", sp, {}});
  }
  {
    ConvNormSpec sp;
    sp.conv = "ConvTranspose";
    variants.push_back({"ConvTranspose (group 2) -> InstanceNorm", sp, {}});
  }
  {
    ConvNormSpec sp;
    sp.conv = "FusedConv";
    variants.push_back({"FusedConv without activation -> InstanceNorm", sp, {}});
  }
  std::mt19937 rng(13);
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    const Model model = ConvNormModel(v.sp);
    SessionOptions o;
    o.disabled_passes = v.disabled;
    auto s = Session::Create(model, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const Node* conv = ConvOf(**s);
    ASSERT_NE(conv, nullptr);
    EXPECT_EQ(conv->op_type, v.sp.conv);
    EXPECT_EQ(conv->inputs, (std::vector<std::string>{"x", "w"})) << "the bias must be gone";
    EXPECT_EQ((*s)->model().graph.initializers.count("cb"), 0u) << "the unread bias initializer is dropped";
    EXPECT_TRUE(AppliedPass(**s, "drop_conv_bias_before_norm"));
    // The reference path keeps the bias (it is the graph as built).
    SessionOptions plain;
    plain.disabled_passes = EveryPass();
    auto p = Session::Create(model, plain);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_NE(ConvOf(**p), nullptr);
    EXPECT_EQ(ConvOf(**p)->inputs.size(), 3u);
    ExpectSameAsUnoptimised(model, rng);
  }
}

TEST(DropConvBiasBeforeNorm, KeepsTheBiasWhereItMatters) {
  struct Variant {
    std::string what;
    ConvNormSpec sp;
  };
  std::vector<Variant> variants;
  {
    ConvNormSpec sp;
    sp.second_reader = true;
    variants.push_back({"conv output read by the norm and a Sigmoid", sp});
  }
  {
    ConvNormSpec sp;
    sp.conv_is_output = true;
    variants.push_back({"conv output is a graph output", sp});
  }
  for (int64_t groups : {1, 2, 3}) {
    ConvNormSpec sp;
    sp.norm = "GroupNorm";
    sp.groups = groups;
    variants.push_back({"GroupNorm with " + std::to_string(groups) + " group(s) of 6 channels", sp});
  }
  {
    ConvNormSpec sp;
    sp.conv = "ConvTranspose";
    sp.norm = "GroupNorm";
    sp.groups = 3;  // = W's dim 1, not the 6 channels
    variants.push_back({"ConvTranspose -> GroupNorm with 3 groups", sp});
  }
  {
    ConvNormSpec sp;
    sp.between = "LeakyRelu";  // becomes FusedConv(LeakyRelu) -> GroupNorm
    variants.push_back({"Conv -> LeakyRelu -> InstanceNorm", sp});
  }
  {
    ConvNormSpec sp;
    sp.conv = "FusedConv";
    sp.fused_act = "Relu";
    variants.push_back({"FusedConv(Relu) -> InstanceNorm", sp});
  }
  std::mt19937 rng(17);
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    const Model model = ConvNormModel(v.sp);
    auto s = Session::Create(model);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const Node* conv = ConvOf(**s);
    ASSERT_NE(conv, nullptr);
    EXPECT_EQ(conv->inputs.size(), 3u) << "the bias must stay";
    EXPECT_FALSE(AppliedPass(**s, "drop_conv_bias_before_norm"));
    ExpectSameAsUnoptimised(model, rng);
  }
  // With conv+activation fusion off the LeakyRelu stays a node of its own: still kept.
  ConvNormSpec sp;
  sp.between = "LeakyRelu";
  SessionOptions o;
  o.disabled_passes = {"fuse_conv_activation"};
  auto s = Session::Create(ConvNormModel(sp), o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_NE(ConvOf(**s), nullptr);
  EXPECT_EQ(ConvOf(**s)->inputs.size(), 3u);
}

// ---- fuse_elementwise -----------------------------------------------------------------

// torch's exact GELU: Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5.
Model GeluModel(Shape shape) {
  Builder b;
  std::vector<Dim> dims;
  for (int64_t d : shape) dims.push_back(Dim{d, ""});
  b.Input("x", dims);
  b.g().initializers["sqrt2"] = Scalar(1.41421353816986083984375f);
  b.g().initializers["one"] = Scalar(1.0f);
  b.g().initializers["half"] = Scalar(0.5f);
  b.Add("Div", {"x", "sqrt2"}, "d");
  b.Add("Erf", {"d"}, "e");
  b.Add("Add", {"e", "one"}, "p");
  b.Add("Mul", {"x", "p"}, "m");
  b.Add("Mul", {"m", "half"}, "y");
  b.Output("y");
  return b.m;
}

TEST(FuseElementwise, GeluBecomesOneNodeWithHandDerivedValues) {
  const Model model = GeluModel({6});
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto fused = NodesOf(**s, "FusedElementwise");
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(s.value()->model().graph.nodes.size(), 1u);
  EXPECT_EQ(fused[0]->inputs, std::vector<std::string>{"x"});
  auto program = fused::ParseProgram(*fused[0]);
  ASSERT_TRUE(program.ok()) << program.status().ToString();
  EXPECT_EQ(program->code.size(), 5u);
  // GELU(x) = x/2 (1 + erf(x / sqrt 2)); values from the closed form (erf tables).
  auto out = (*s)->Run(std::vector<Tensor>{Tensor::FromVector<float>({-2, -1, 0, 0.5f, 1, 2}, {6}).value()});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const double expect[] = {-0.04550026389635842, -0.15865525393145707, 0.0,
                           0.34573123063700656,  0.8413447460685429,   1.9544997361036416};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR((*out)[0].data<float>()[i], expect[i], 2e-7) << i;
}

TEST(FuseElementwise, SwishReadsItsInputTwice) {
  Builder b;
  b.Input("x", Dims({5}));
  b.Add("Sigmoid", {"x"}, "s");
  b.Add("Mul", {"x", "s"}, "y");
  b.Output("y");
  auto s = Session::Create(b.m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto fused = NodesOf(**s, "FusedElementwise");
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0]->inputs, std::vector<std::string>{"x"});
  // SiLU(x) = x / (1 + e^-x).
  auto out = (*s)->Run(std::vector<Tensor>{Tensor::FromVector<float>({-3, -1, 0, 1, 2}, {5}).value()});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const double expect[] = {-0.14227761953270035, -0.2689414213699951, 0.0, 0.7310585786300049, 1.7615941559557646};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR((*out)[0].data<float>()[i], expect[i], 2e-7) << i;
}

TEST(FuseElementwise, ScaleAndBiasBroadcastPerChannel) {
  Builder b;
  b.Input("x", Dims({2, 3, 2}));
  b.g().initializers["scale"] = Tensor::FromVector<float>({1, 2, -3}, {3, 1}).value();
  b.g().initializers["bias"] = Tensor::FromVector<float>({10, 20}, {2}).value();
  b.Add("Mul", {"x", "scale"}, "m");
  b.Add("Add", {"bias", "m"}, "y");
  b.Output("y");
  auto s = Session::Create(b.m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(NodesOf(**s, "FusedElementwise").size(), 1u);
  EXPECT_EQ(NodesOf(**s, "FusedElementwise")[0]->inputs.size(), 3u);
  std::vector<float> xv(12);
  for (int i = 0; i < 12; ++i) xv[static_cast<size_t>(i)] = static_cast<float>(i);
  auto out = (*s)->Run(std::vector<Tensor>{Tensor::FromVector(xv, {2, 3, 2}).value()});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  const float scale[] = {1, 2, -3}, bias[] = {10, 20};
  for (int i = 0; i < 12; ++i) EXPECT_EQ((*out)[0].data<float>()[i], i * scale[(i / 2) % 3] + bias[i % 2]) << i;
}

TEST(FuseElementwise, ScalarConstantOfHigherRankWidensTheOutput) {
  Builder b;
  b.Input("x", Dims({3}));
  b.g().initializers["two"] = Tensor::FromVector<float>({2}, {1, 1}).value();
  b.Add("Mul", {"x", "two"}, "m");
  b.Add("Neg", {"m"}, "y");
  b.Output("y");
  auto s = Session::Create(b.m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(NodesOf(**s, "FusedElementwise").size(), 1u);
  auto out = (*s)->Run(std::vector<Tensor>{Tensor::FromVector<float>({1, 2, 3}, {3}).value()});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 3}));
  EXPECT_EQ((*out)[0].data<float>()[2], -6.0f);
}

TEST(FuseElementwise, LeavesNonFusableChainsAlone) {
  {  // the intermediate has two readers
    Builder b;
    b.Input("x", Dims({4}));
    b.Add("Relu", {"x"}, "r");
    b.Add("Sigmoid", {"r"}, "y1");
    b.Add("Tanh", {"r"}, "y2");
    b.Output("y1");
    b.Output("y2");
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(NodesOf(**s, "FusedElementwise").empty());
  }
  {  // the intermediate is a graph output
    Builder b;
    b.Input("x", Dims({4}));
    b.Add("Relu", {"x"}, "r");
    b.Add("Sigmoid", {"r"}, "y");
    b.Output("y");
    b.Output("r");
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(NodesOf(**s, "FusedElementwise").empty());
  }
  {  // Conv -> Relu stays FusedConv; the Sigmoid after it is alone
    std::mt19937 rng(1);
    Builder b;
    b.Input("x", Dims({1, 2, 5, 5}));
    b.g().initializers["w"] = Random({2, 2, 3, 3}, rng);
    b.Add("Conv", {"x", "w"}, "c").attrs.SetInts("kernel_shape", {3, 3});
    b.Add("Relu", {"c"}, "r");
    b.Add("Sigmoid", {"r"}, "y");
    b.Output("y");
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(NodesOf(**s, "FusedElementwise").empty());
    ASSERT_EQ(NodesOf(**s, "FusedConv").size(), 1u);
    EXPECT_EQ(NodesOf(**s, "FusedConv")[0]->attrs.GetString("activation", ""), "Relu");
  }
  {  // int64 shape arithmetic (Shape -> Gather -> Mul -> Add -> ... Reshape) is not float
    Builder b;
    b.Input("x", {Dim{-1, "N"}, Dim{6, ""}});
    b.g().initializers["zero"] = Tensor::FromVector<int64_t>({0}, {}).value();
    b.g().initializers["two"] = Tensor::FromVector<int64_t>({2}, {}).value();
    b.g().initializers["one"] = Tensor::FromVector<int64_t>({1}, {}).value();
    b.g().initializers["axes"] = Tensor::FromVector<int64_t>({0}, {1}).value();
    b.g().initializers["minus1"] = Tensor::FromVector<int64_t>({-1}, {1}).value();
    b.Add("Shape", {"x"}, "shape");
    b.Add("Gather", {"shape", "zero"}, "n");
    b.Add("Mul", {"n", "two"}, "n2");
    b.Add("Sub", {"n2", "one"}, "n3");
    b.Add("Add", {"n3", "one"}, "n4");
    b.Add("Unsqueeze", {"n4", "axes"}, "n5");
    b.Add("Concat", {"n5", "minus1"}, "target").attrs.SetInt("axis", 0);
    b.Add("Reshape", {"x", "target"}, "y");
    b.Output("y");
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(NodesOf(**s, "FusedElementwise").empty());
    auto out = (*s)->Run(std::vector<Tensor>{Tensor::Allocate(DType::kF32, {2, 6}).value()});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ((*out)[0].shape(), (Shape{4, 3}));
  }
}

// The other passes' patterns run first (fuse_elementwise runs after they settle): torch's
// GroupNorm export (… -> Reshape -> Mul -> Add) is still recognised, and norm -> act keeps
// its activation; only the elementwise ops left over are fused.
TEST(FuseElementwise, OtherFusionsKeepTheirOps) {
  std::mt19937 rng(2);
  Builder b;
  b.Input("x", Dims({1, 4, 2, 3}));
  b.g().initializers["target"] = Tensor::FromVector<int64_t>({0, 2, -1}, {3}).value();
  b.g().initializers["ones"] = Tensor::FromVector<float>({1, 1}, {2}).value();
  b.g().initializers["zeros"] = Tensor::FromVector<float>({0, 0}, {2}).value();
  b.g().initializers["gamma"] = Random({4, 1, 1}, rng, 0.5f, 1.5f);
  b.g().initializers["beta"] = Random({4, 1, 1}, rng);
  b.g().initializers["s"] = Random({4}, rng, 0.5f, 1.5f);
  b.g().initializers["t"] = Random({4}, rng);
  b.g().initializers["k"] = Random({4, 1, 1}, rng);
  b.Add("Shape", {"x"}, "shape");
  b.Add("Reshape", {"x", "target"}, "r");
  b.Add("InstanceNormalization", {"r", "ones", "zeros"}, "n");
  b.Add("Reshape", {"n", "shape"}, "r2");
  b.Add("Mul", {"r2", "gamma"}, "m");
  b.Add("Add", {"m", "beta"}, "gn");
  b.Add("InstanceNormalization", {"gn", "s", "t"}, "in");
  b.Add("Relu", {"in"}, "a");
  b.Add("Mul", {"a", "k"}, "ak");
  b.Add("Sigmoid", {"ak"}, "y");
  b.Output("y");
  auto s = Session::Create(b.m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto norms = NodesOf(**s, "GroupNorm");
  ASSERT_EQ(norms.size(), 2u);
  EXPECT_EQ(norms[0]->attrs.GetInt("num_groups", 0), 2);
  EXPECT_EQ(norms[1]->attrs.GetString("activation", ""), "Relu");
  const auto fused = NodesOf(**s, "FusedElementwise");
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0]->inputs, (std::vector<std::string>{"a", "k"}));
  EXPECT_EQ((*s)->model().graph.nodes.size(), 3u);
  std::vector<Tensor> in = {Random({1, 4, 2, 3}, rng)};
  const auto fused_out = RunModel(b.m, in);
  const auto plain = RunModel(b.m, in, kAllFusions);
  ASSERT_EQ(fused_out.size(), 1u);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_LT(RelativeError(fused_out[0], plain[0]), 2e-6);
}

TEST(FuseElementwise, LongAndWideChainsAreSplitAtTheLimits) {
  std::mt19937 rng(5);
  Builder b;
  // 12 inputs summed (more than 8 inputs), then 20 unary ops (more than 16 instructions).
  std::string v = "in0";
  std::vector<Tensor> inputs;
  for (int i = 0; i < 12; ++i) {
    const std::string name = "in" + std::to_string(i);
    b.Input(name, Dims({3, 7}));
    inputs.push_back(Random({3, 7}, rng));
    if (i > 0) {
      b.Add("Add", {v, name}, "sum" + std::to_string(i));
      v = "sum" + std::to_string(i);
    }
  }
  for (int i = 0; i < 20; ++i) {
    const std::string out = "u" + std::to_string(i);
    b.Add(i % 3 == 0 ? "Tanh" : (i % 3 == 1 ? "Neg" : "Softsign"), {v}, out);
    v = out;
  }
  b.Output(v);
  auto s = Session::Create(b.m);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const auto fused = NodesOf(**s, "FusedElementwise");
  ASSERT_GE(fused.size(), 2u);
  for (const Node* n : fused) {
    auto program = fused::ParseProgram(*n);
    ASSERT_TRUE(program.ok()) << program.status().ToString();
    EXPECT_LE(n->inputs.size(), 8u);
    EXPECT_LE(program->code.size(), 16u);
  }
  const auto fused_out = (*s)->Run(inputs);
  ASSERT_TRUE(fused_out.ok()) << fused_out.status().ToString();
  const auto plain = RunModel(b.m, inputs, {"fuse_elementwise"});
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_LT(RelativeError((*fused_out)[0], plain[0]), 1e-6);
}

// Random trees of elementwise ops over inputs of broadcasting shapes: fused vs unfused.
TEST(FuseElementwise, RandomChainsMatchTheUnfusedGraph) {
  const char* unary[] = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "Abs", "Neg", "Softsign", "HardSwish",
                         "Sin", "Cos", "Softplus", "Elu", "HardSigmoid", "Floor", "Selu", "Clip"};
  const char* binary[] = {"Add", "Sub", "Mul", "Max", "Min", "Div", "Pow", "PRelu", "Sum"};
  const Shape shapes[] = {{2, 3, 4, 5}, {3, 1, 5}, {5}, {1, 3, 4, 1}, {2, 3, 4, 5}, {}};
  int fused_nodes = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    Builder b;
    std::vector<Tensor> inputs;
    b.Input("x", Dims({2, 3, 4, 5}));
    inputs.push_back(Random({2, 3, 4, 5}, rng));
    std::string v = "x";
    bool positive = false;  // v > 0 (Log, Sqrt, Pow's base need it)
    const int steps = 2 + pick(12);
    for (int i = 0; i < steps; ++i) {
      const std::string out = "t" + std::to_string(i);
      if (positive && pick(4) == 0) {
        b.Add(pick(2) ? "Log" : "Sqrt", {v}, out);
        positive = false;
      } else if (pick(2) == 0) {
        const std::string op = unary[pick(static_cast<int>(std::size(unary)))];
        Node& n = b.Add(op, {v}, out);
        if (op == "LeakyRelu" || op == "Elu") n.attrs.SetFloat("alpha", 0.3f);
        if (op == "Clip") {
          b.g().initializers[out + "_lo"] = Scalar(-0.4f);
          b.g().initializers[out + "_hi"] = Scalar(0.7f);
          n.inputs = {v, out + "_lo", out + "_hi"};
        }
        positive = false;
      } else {
        const std::string op = binary[pick(static_cast<int>(std::size(binary)))];
        std::string other;
        if (op == "Pow") {  // positive base, scalar exponent
          b.Add("Sigmoid", {v}, out + "_base");
          v = out + "_base";
          other = out + "_exp";
          b.g().initializers[other] = Scalar(pick(2) ? 2.0f : 1.5f);
        } else if (op == "Div" || pick(3) == 0) {  // a constant (scalar or not), away from zero
          other = out + "_c";
          const Shape s = shapes[pick(static_cast<int>(std::size(shapes)))];
          b.g().initializers[other] = Random(s, rng, 0.5f, 2.0f);
        } else if (pick(3) == 0) {
          other = "x";  // read again: an external input used twice
        } else {
          other = "in" + std::to_string(i);
          const Shape s = shapes[pick(static_cast<int>(std::size(shapes)))];
          std::vector<Dim> dims;
          for (int64_t d : s) dims.push_back(Dim{d, ""});
          b.Input(other, dims);
          inputs.push_back(Random(s, rng));
        }
        const bool swap = op != "Pow" && op != "Div" && op != "PRelu" && pick(2);
        b.Add(op, swap ? std::vector<std::string>{other, v} : std::vector<std::string>{v, other}, out);
        positive = op == "Pow";
      }
      v = out;
    }
    b.Output(v);
    SessionOptions o;
    o.threads = 2;
    auto s = Session::Create(b.m, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    fused_nodes += static_cast<int>(NodesOf(**s, "FusedElementwise").size());
    auto fused_out = (*s)->Run(inputs);
    ASSERT_TRUE(fused_out.ok()) << fused_out.status().ToString();
    const auto plain = RunModel(b.m, inputs, {"fuse_elementwise"});
    ASSERT_EQ(plain.size(), 1u);
    EXPECT_LT(RelativeError((*fused_out)[0], plain[0]), 2e-6);
  }
  EXPECT_GE(fused_nodes, 30);  // the pass did fire on most seeds
}

}  // namespace
}  // namespace itkit
