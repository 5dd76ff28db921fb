// split_conv_over_concat and itkit.FusedConv's Z input on hand-built graphs: what the
// pass matches and leaves alone, where it puts the parts' convolutions, hand-derived
// values of a split 1x1x1 convolution, and split graphs against the same graphs with
// every pass disabled. (PyTorch references: the zoo's U-Nets, whose decoders it splits.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "itkit/passes.h"
#include "itkit/session.h"
#include "graph_test_util.h"

namespace itkit {
namespace {

using test::EveryPass;
using test::RelativeError;
using test::Random;
using test::RunModel;

// GraphBuilder with inputs given by shape.
struct Builder : test::GraphBuilder {
  void Input(const std::string& name, const Shape& shape) { InputOfShape(name, shape); }
};

int CountOps(const Session& s, const std::string& op) {
  int n = 0;
  for (const Node& node : s.model().graph.nodes) n += node.op_type == op;
  return n;
}

bool Applied(const Session& s) {
  const auto& a = s.applied_passes();
  return std::find(a.begin(), a.end(), "split_conv_over_concat") != a.end();
}

// Concat(a [1,2,5,1,1], b [1,3,5,1,1]) -> 1x1x1 Conv with W = [1 2 3 4 5], B = 0.5.
// (Inputs of more than 8 elements: smaller ones are folded at plan time.)
Model PointwiseModel() {
  Builder b;
  b.Input("a", {1, 2, 5, 1, 1});
  b.Input("b", {1, 3, 5, 1, 1});
  b.m.graph.initializers["w"] = Tensor::FromVector(std::vector<float>{1, 2, 3, 4, 5}, {1, 5, 1, 1, 1}).value();
  b.m.graph.initializers["bias"] = Tensor::FromVector(std::vector<float>{0.5f}, {1}).value();
  b.Add("Concat", {"a", "b"}, "cat").attrs.SetInt("axis", 1);
  b.Add("Conv", {"cat", "w", "bias"}, "y");
  b.Output("y");
  return b.m;
}

TEST(SplitConvOverConcat, PointwiseConvMatchesHandDerivedValues) {
  const Model model = PointwiseModel();
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(Applied(**s));
  EXPECT_EQ(CountOps(**s, "Concat"), 0);
  EXPECT_EQ(CountOps(**s, "FusedConv"), 2);
  // The second part adds into the first through Z and carries the bias.
  const Node& last = (*s)->model().graph.nodes.back();
  ASSERT_EQ(last.inputs.size(), 4u);
  EXPECT_EQ(last.inputs[2], "bias");
  EXPECT_EQ(last.inputs[3], (*s)->model().graph.nodes.front().outputs[0]);
  // Channel c of the concatenation at z is 10 * c + z (a: c = 0, 1; b: c = 2, 3, 4).
  std::vector<float> av, bv;
  for (int c = 0; c < 5; ++c)
    for (int z = 0; z < 5; ++z) (c < 2 ? av : bv).push_back(static_cast<float>(10 * c + z));
  const Tensor a = Tensor::FromVector(av, {1, 2, 5, 1, 1}).value();
  const Tensor bt = Tensor::FromVector(bv, {1, 3, 5, 1, 1}).value();
  auto out = (*s)->Run(std::vector<Tensor>{a, bt});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // y(z) = sum_c (c + 1) (10 c + z) + 0.5 = 10 (1*0 + 2*1 + 3*2 + 4*3 + 5*4) + 15 z + 0.5 = 400.5 + 15 z
  ASSERT_EQ((*out)[0].size(), 5);
  for (int z = 0; z < 5; ++z) EXPECT_FLOAT_EQ((*out)[0].data<float>()[z], 400.5f + 15.0f * z) << "z " << z;
}

// A U-Net decoder step: skip = Relu(Conv(x)); up = ConvTranspose(Relu(Conv(skip,
// stride 2))); Conv(Concat(up, skip)) -> LeakyRelu (-> InstanceNorm), or straight into
// the InstanceNorm (nnU-Net's order: the split's bias is then dropped, Z kept).
enum class After { kAct, kActNorm, kNorm };
Model DecoderModel(After after) {
  const bool with_norm = after != After::kAct;
  std::mt19937 rng(21);
  Builder b;
  b.Input("x", {2, 3, 8, 8, 8});
  auto& g = b.m.graph;
  g.initializers["w_enc"] = Random({4, 3, 3, 3, 3}, rng);
  g.initializers["w_down"] = Random({6, 4, 3, 3, 3}, rng);
  g.initializers["w_up"] = Random({6, 5, 2, 2, 2}, rng);  // ConvTranspose: [C_in, C_out, k...]
  g.initializers["w_dec"] = Random({4, 9, 3, 3, 3}, rng);
  g.initializers["b_dec"] = Random({4}, rng);
  const std::vector<int64_t> pads = {1, 1, 1, 1, 1, 1};
  b.Add("Conv", {"x", "w_enc"}, "enc").attrs.SetInts("pads", pads);
  b.Add("Relu", {"enc"}, "skip");
  Node& down = b.Add("Conv", {"skip", "w_down"}, "down");
  down.attrs.SetInts("pads", pads);
  down.attrs.SetInts("strides", {2, 2, 2});
  b.Add("Relu", {"down"}, "deep");
  b.Add("ConvTranspose", {"deep", "w_up"}, "up").attrs.SetInts("strides", {2, 2, 2});
  b.Add("Concat", {"up", "skip"}, "cat").attrs.SetInt("axis", 1);
  b.Add("Conv", {"cat", "w_dec", "b_dec"}, "dec").attrs.SetInts("pads", pads);
  if (after != After::kNorm) b.Add("LeakyRelu", {"dec"}, with_norm ? "act" : "y").attrs.SetFloat("alpha", 0.1f);
  if (with_norm) {
    g.initializers["scale"] = Random({4}, rng);
    g.initializers["shift"] = Random({4}, rng);
    b.Add("InstanceNormalization", {after == After::kNorm ? "dec" : "act", "scale", "shift"}, "y");
  }
  b.Output("y");
  return b.m;
}

TEST(SplitConvOverConcat, DecoderStepMatchesTheUnsplitGraph) {
  for (After after : {After::kAct, After::kActNorm, After::kNorm}) {
    const bool with_norm = after != After::kAct;
    SCOPED_TRACE(after == After::kAct ? "activation last" : after == After::kActNorm ? "activation, then a norm"
                                                                                      : "a norm right after");
    const Model model = DecoderModel(after);
    auto s = Session::Create(model);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_TRUE(Applied(**s));
    EXPECT_EQ(CountOps(**s, "Concat"), 0);
    const auto& nodes = (*s)->model().graph.nodes;
    // The skip's part runs before the ConvTranspose makes the upsampled part, and the
    // activation is fused into the last part only.
    size_t skip_part = nodes.size(), up_part = nodes.size(), transpose = nodes.size();
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i].op_type == "ConvTranspose") transpose = i;
      if (nodes[i].op_type != "FusedConv" || nodes[i].inputs.empty()) continue;
      if (nodes[i].inputs[0] == "skip") skip_part = i;
      if (nodes[i].inputs[0] == "up") up_part = i;
    }
    ASSERT_LT(skip_part, nodes.size());
    ASSERT_LT(up_part, nodes.size());
    EXPECT_LT(skip_part, transpose);
    EXPECT_LT(transpose, up_part);
    EXPECT_TRUE(nodes[skip_part].attrs.GetString("activation", "").empty());
    EXPECT_EQ(nodes[up_part].attrs.GetString("activation", ""), after == After::kNorm ? "" : "LeakyRelu");
    ASSERT_EQ(nodes[up_part].inputs.size(), 4u);
    EXPECT_EQ(nodes[up_part].inputs[3], nodes[skip_part].outputs[0]);
    // The bias goes with the last part; before a per-channel norm it is dropped.
    EXPECT_EQ(nodes[up_part].inputs[2], after == After::kNorm ? "" : "b_dec");
    std::mt19937 rng(3);
    const std::vector<Tensor> in = {Random({2, 3, 8, 8, 8}, rng)};
    const std::vector<Tensor> split = RunModel(model, in);
    const std::vector<Tensor> plain = RunModel(model, in, EveryPass());
    ASSERT_EQ(split.size(), 1u);
    ASSERT_EQ(plain.size(), 1u);
    EXPECT_LT(RelativeError(split[0], plain[0]), 1e-5);
    // Less activation memory: no concatenated tensor.
    auto split_stats = (*s)->StatsFor({in[0].shape()});
    SessionOptions unsplit_options;
    unsplit_options.disabled_passes = {"split_conv_over_concat"};
    auto unsplit = Session::Create(model, unsplit_options);
    ASSERT_TRUE(unsplit.ok());
    auto unsplit_stats = (*unsplit)->StatsFor({in[0].shape()});
    ASSERT_TRUE(split_stats.ok() && unsplit_stats.ok());
    EXPECT_LT(split_stats->value_arena_bytes, unsplit_stats->value_arena_bytes);
    // Unsplit, the values peak where the concatenation is made (skip + upsampled + both).
    EXPECT_NE(unsplit_stats->peak_step.find("(Concat)"), std::string::npos) << unsplit_stats->peak_step;
    EXPECT_LT(split_stats->peak_live_bytes, unsplit_stats->peak_live_bytes);
    EXPECT_LE(unsplit_stats->peak_live_bytes, unsplit_stats->value_arena_bytes);
    // The upsampled part's sum is written over the skip part's, unless it is the graph
    // output (those go straight to the caller's tensor on the CPU).
    EXPECT_EQ(split_stats->in_place_values, with_norm ? 1u : 0u);
  }
}

TEST(SplitConvOverConcat, LeavesOtherShapesAlone) {
  struct Variant {
    const char* what;
    std::function<void(Builder&)> change;
  };
  const std::vector<Variant> variants = {
      {"grouped convolution",
       [](Builder& b) {  // 5 groups of one channel: W [5, 1, 1, 1, 1], no bias
         b.m.graph.initializers["w"] = Tensor::Allocate(DType::kF32, {5, 1, 1, 1, 1}).value();
         b.m.graph.nodes.back().attrs.SetInt("group", 5);
         b.m.graph.nodes.back().inputs.resize(2);
       }},
      {"concatenation on a spatial axis",
       [](Builder& b) {
         b.m.graph.nodes.front().attrs.SetInt("axis", 2);
         b.m.graph.inputs[1].dims[1].value = 2;
         b.m.graph.initializers["w"] = Tensor::Allocate(DType::kF32, {1, 2, 1, 1, 1}).value();
       }},
      {"concatenation also a graph output", [](Builder& b) { b.Output("cat"); }},
      {"concatenation with a second reader",
       [](Builder& b) {
         b.Add("Sigmoid", {"cat"}, "s");
         b.Output("s");
       }},
      {"weights that are an input",
       [](Builder& b) {
         b.m.graph.initializers.erase("w");
         b.Input("w", {1, 5, 1, 1, 1});
       }},
  };
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    Builder b;
    b.m = PointwiseModel();
    v.change(b);
    auto s = Session::Create(b.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_FALSE(Applied(**s));
    EXPECT_EQ(CountOps(**s, "Concat"), 1);
  }
}

// FusedConv(x, w, Z = z0) where z0 = Relu(a): Y takes z0's memory when nothing reads
// z0 afterwards, and not when a later node still does; the values either way.
TEST(FusedConvZ, OutputTakesZsMemoryOnlyWhenZDiesThere) {
  for (bool z_read_later : {false, true}) {
    SCOPED_TRACE(z_read_later ? "Z read again later" : "Z dies at the convolution");
    Builder b;
    b.m.graph.opsets["itkit"] = 1;
    b.Input("x", {1, 2, 9, 1, 1});
    b.Input("a", {1, 1, 9, 1, 1});  // more than 8 elements: not folded at plan time
    b.m.graph.initializers["w"] = Tensor::FromVector(std::vector<float>{2, -1}, {1, 2, 1, 1, 1}).value();
    b.Add("Relu", {"a"}, "z0");
    Node& conv = b.Add("FusedConv", {"x", "w", "", "z0"}, "y");
    conv.domain = "itkit";
    conv.attrs.SetString("activation", "Relu");
    // A graph output on the CPU is written into the caller's tensor: Y is read by a
    // node here so that it lives in the arena.
    if (z_read_later) {
      b.Add("Add", {"y", "z0"}, "out");
    } else {
      b.Add("Neg", {"y"}, "out");
    }
    b.Output("out");
    SessionOptions o;
    o.disabled_passes = EveryPass();
    auto s = Session::Create(b.m, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    // x0(i) = i, x1(i) = 2 i - 3, a(i) = 4 - i: conv = 2 x0 - x1 = 3; z0 = max(4 - i, 0);
    // y = relu(3 + z0) = 3 + z0; out = y + z0 = 3 + 2 z0, or -y = -3 - z0.
    std::vector<float> xv(18), av(9);
    for (int i = 0; i < 9; ++i) {
      xv[static_cast<size_t>(i)] = static_cast<float>(i);
      xv[static_cast<size_t>(9 + i)] = static_cast<float>(2 * i - 3);
      av[static_cast<size_t>(i)] = static_cast<float>(4 - i);
    }
    const Tensor x = Tensor::FromVector(xv, {1, 2, 9, 1, 1}).value();
    const Tensor a = Tensor::FromVector(av, {1, 1, 9, 1, 1}).value();
    auto stats = (*s)->StatsFor({x.shape(), a.shape()});
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->in_place_values, z_read_later ? 0u : 1u);
    auto out = (*s)->Run(std::vector<Tensor>{x, a});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ASSERT_EQ((*out)[0].size(), 9);
    for (int i = 0; i < 9; ++i) {
      const float z0 = std::max(4.0f - static_cast<float>(i), 0.0f);
      EXPECT_FLOAT_EQ((*out)[0].data<float>()[i], z_read_later ? 3.0f + 2.0f * z0 : -3.0f - z0) << "i " << i;
    }
  }
}

TEST(FusedConvZ, ShapeRuleWantsYsShapeAndDType) {
  struct Variant {
    const char* what;
    Shape z_shape;
    DType z_dtype;
    const char* error;
  };
  // Y is [1, 4, 3, 3, 3] f32.
  const Variant variants[] = {{"wrong shape", {1, 4, 3, 3, 2}, DType::kF32, "Z must have Y's shape"},
                              {"wrong dtype", {1, 4, 3, 3, 3}, DType::kF16, "Z dtype differs from X's"}};
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    Builder b;
    b.Input("x", {1, 2, 3, 3, 3});
    b.Input("z", v.z_shape);
    b.m.graph.inputs.back().dtype = v.z_dtype;
    b.m.graph.opsets["itkit"] = 1;
    std::mt19937 rng(1);
    b.m.graph.initializers["w"] = Random({4, 2, 1, 1, 1}, rng);
    Node& conv = b.Add("FusedConv", {"x", "w", "", "z"}, "y");
    conv.domain = "itkit";
    b.Output("y");
    SessionOptions o;
    o.disabled_passes = EveryPass();
    auto s = Session::Create(b.m, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    Tensor z = Tensor::Allocate(v.z_dtype, v.z_shape).value();  // zeros: only the plan is judged
    auto run = (*s)->Run(std::vector<Tensor>{Random({1, 2, 3, 3, 3}, rng), z});
    ASSERT_FALSE(run.ok());
    EXPECT_NE(run.status().message().find(v.error), std::string::npos) << run.status().message();
  }
}

}  // namespace
}  // namespace itkit
