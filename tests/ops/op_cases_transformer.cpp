// Op cases for what transformer blocks and hand-written norms need beside the U-Net
// ops: LayerNormalization / itkit.LayerNormAct (token features, and rows long enough
// for the CUDA kernel's block path), Gather with constant indices (attention's q/k/v
// split), and the Reduce* family (channel-first LayerNorms: ReduceMean over C; rows
// and scattered axes). Drawn after every other family, so adding them left the
// earlier cases' random draws unchanged.
#include "op_case_maker.h"

namespace itkit::test::ops {
namespace {

Tensor ScalarI64(int64_t v) { return Tensor::FromVector(std::vector<int64_t>{v}, {}).value(); }

void AddLayerNormCases(Maker& m, std::vector<OpCase>& out) {
  struct S {
    Shape x;
    int64_t axis;
    bool bias;
    float offset;     // added to every input: the variance must not cancel
    const char* act;  // itkit.LayerNormAct's activation; "" = LayerNormalization
    size_t outputs;   // 3: Mean and InvStdDev too
    bool half = false;  // f16 X (and f16 Scale/B), as FP16 mode stores them
  };
  const S specs[] = {
      {{2, 16, 48}, -1, true, 0.0f, "", 1},           // UNETR's tokens (hidden 48)
      {{3, 5, 7}, 1, false, 0.0f, "", 1},             // two normalised axes, no bias
      {{2, 3, 1100}, -1, true, 5.0f, "", 1},          // few long rows: split over blocks
      {{1, 2, 3, 4, 5}, 0, true, -3.0f, "", 1},       // one row of everything
      {{4, 9, 64}, 2, true, 0.0f, "Gelu", 1},         // LayerNorm + GELU (fuse_norm_activation)
      {{3, 7, 40}, -1, true, 0.0f, "LeakyRelu", 1},
      {{2, 6, 33}, -1, true, 1.0f, "", 3},            // Mean and InvStdDev requested
      {{2, 16, 48}, -1, true, 0.0f, "", 1, true},     // f16, a warp per row
      {{2, 2, 1500}, -1, true, 2.0f, "Gelu", 1, true},  // f16, few long rows
      {{2, 3, 40, 50}, 1, true, 4.0f, "", 3},           // two rows of 6000: split, with Mean/InvStdDev
      {{300, 1030}, -1, true, 1.0f, "", 1},             // many long rows: a block per row
      {{280, 1200}, 1, false, 0.0f, "Relu", 1, true},   // f16, a block per row
  };
  for (const S& sp : specs) {
    const bool fused = sp.act[0] != '\0';
    const size_t rank = sp.x.size();
    const size_t axis = static_cast<size_t>(sp.axis < 0 ? sp.axis + static_cast<int64_t>(rank) : sp.axis);
    const Shape normalized(sp.x.begin() + static_cast<std::ptrdiff_t>(axis), sp.x.end());
    Node node = MakeNode(fused ? "LayerNormAct" : "LayerNormalization", sp.bias ? 3 : 2, sp.outputs,
                         fused ? "itkit" : "");
    node.attrs.SetInt("axis", sp.axis);
    node.attrs.SetFloat("epsilon", m.Pick({1e-5f, 1e-6f}));
    if (fused) {
      node.attrs.SetString("activation", sp.act);
      node.attrs.SetFloat("alpha", 0.1f);
    }
    std::vector<Tensor> in = {m.Signed(sp.x, 0.1f, 1.0f, sp.offset), m.Signed(normalized, 0.5f, 1.5f)};
    if (sp.bias) in.push_back(m.Signed(normalized));
    if (sp.half)
      for (Tensor& t : in) t = Half(t);
    const std::string name = node.op_type + (fused ? std::string(" ") + sp.act : "") + (sp.half ? " f16" : "") +
                             " x" + Str(sp.x) + " axis " + std::to_string(sp.axis) + (sp.bias ? "" : " no bias") +
                             (sp.outputs == 3 ? " +Mean +InvStdDev" : "");
    out.push_back(Case("layernorm", name, std::move(node), std::move(in), {false, true, true}));
  }
}

void AddGatherCases(Maker& m, std::vector<OpCase>& out) {
  // Attention's q/k/v split: Gather(qkv [3, B, heads, tokens, d], i) on axis 0.
  for (int64_t i = 0; i < 3; ++i) {
    const Shape x = {3, 2, 4, m.Int(5, 17), 8};
    Node node = MakeNode("Gather", 2);
    node.attrs.SetInt("axis", 0);
    out.push_back(Case("gather", "Gather x" + Str(x) + " axis 0 index " + std::to_string(i), std::move(node),
                       {m.Signed(x), ScalarI64(i)}, {false, true}));
  }
  {  // one index on an inner axis: rows of a strided copy
    const Shape x = {2, 3, 5, 4};
    Node node = MakeNode("Gather", 2);
    node.attrs.SetInt("axis", 2);
    out.push_back(Case("gather", "Gather x" + Str(x) + " axis 2 index 3", std::move(node), {m.Signed(x), ScalarI64(3)},
                       {false, true}));
  }
  {  // 2-D indices with a negative and a repeated one
    const Shape x = {5, 7, 6};
    Node node = MakeNode("Gather", 2);
    node.attrs.SetInt("axis", 1);
    Tensor idx = Tensor::FromVector(std::vector<int64_t>{0, -1, 3, 3}, {2, 2}).value();
    out.push_back(Case("gather", "Gather x" + Str(x) + " axis 1 indices [[0,-1],[3,3]]", std::move(node),
                       {m.Signed(x), std::move(idx)}, {false, true}));
  }
  {  // f16 data (Gather keeps f16 storage in FP16 mode)
    const Shape x = {3, 1, 2, 9, 16};
    Node node = MakeNode("Gather", 2);
    node.attrs.SetInt("axis", 0);
    out.push_back(Case("gather", "Gather f16 x" + Str(x) + " axis 0 index -1", std::move(node),
                       {Half(m.Signed(x)), ScalarI64(-1)}, {false, true}));
  }
  {  // the last axis, int32 indices
    const Shape x = {2, 3, 9};
    Node node = MakeNode("Gather", 2);
    node.attrs.SetInt("axis", -1);
    Tensor idx = Tensor::FromVector(std::vector<int32_t>{4, 0, 8}, {3}).value();
    out.push_back(Case("gather", "Gather x" + Str(x) + " axis -1 int32 indices [4,0,8]", std::move(node),
                       {m.Signed(x), std::move(idx)}, {false, true}));
  }
}

void AddReduceCases(Maker& m, std::vector<OpCase>& out) {
  struct S {
    const char* op;
    Shape x;
    std::vector<int64_t> axes;  // empty: none given
    int64_t keepdims, opset;
    bool axes_input;  // axes as a constant input (ReduceSum from 13, all from 18)
    bool noop = false;
    bool half = false;
  };
  const S specs[] = {
      {"ReduceMean", {2, 8, 4, 5, 6}, {1}, 1, 17, false},      // channel-first LayerNorm's mean
      {"ReduceMean", {2, 8, 4, 5, 6}, {1}, 1, 18, true},
      {"ReduceSum", {3, 40, 64}, {-1}, 0, 13, true},           // rows (a warp per output)
      {"ReduceMax", {4, 3, 5, 6}, {0, 2}, 0, 17, false},       // scattered axes
      {"ReduceMin", {7, 9}, {}, 1, 17, false},                 // every axis
      {"ReduceSumSquare", {3, 4, 50}, {1, 2}, 1, 17, false},   // merged trailing axes
      {"ReduceL1", {5, 6, 7}, {0}, 1, 17, false},
      {"ReduceL2", {5, 6, 7}, {2, 0}, 0, 17, false},
      {"ReduceLogSum", {4, 33, 2}, {1}, 1, 17, false},
      {"ReduceLogSumExp", {6, 70}, {1}, 0, 17, false},
      {"ReduceProd", {5, 4, 3}, {1}, 1, 17, false},
      {"ReduceSumSquare", {3, 5}, {}, 1, 18, false, true},     // noop_with_empty_axes: squares
      {"ReduceMean", {1, 16, 3, 4, 5}, {1}, 1, 17, false, false, true},  // f16
      {"ReduceMax", {2, 5, 64}, {2}, 0, 17, false, false, true},         // f16 rows
      // Few outputs, long reductions: each output split over blocks on the GPU.
      {"ReduceMean", {2, 8, 16, 16, 16}, {}, 0, 17, false},              // one output
      {"ReduceMean", {2, 4, 16, 16, 16}, {2, 3, 4}, 1, 17, false},       // pooled channels (rows)
      {"ReduceSum", {64, 3, 128}, {0, 2}, 1, 13, true},                  // scattered axes (box)
      {"ReduceMax", {3, 40, 200}, {0, 2}, 0, 17, false, false, true},    // f16, box
      {"ReduceSumSquare", {2, 3, 70, 80}, {0, 2, 3}, 1, 17, false},
  };
  for (const S& sp : specs) {
    const bool positive = std::string(sp.op) == "ReduceLogSum" || std::string(sp.op) == "ReduceProd";
    Node node = MakeNode(sp.op, sp.axes_input ? 2 : 1);
    node.attrs.SetInt("keepdims", sp.keepdims);
    if (!sp.axes.empty() && !sp.axes_input) node.attrs.SetInts("axes", sp.axes);
    if (sp.noop) node.attrs.SetInt("noop_with_empty_axes", 1);
    std::vector<Tensor> in;
    std::vector<bool> constant = {false};
    in.push_back(positive ? m.Positive(sp.x, 0.5f, 1.5f) : m.Signed(sp.x, 0.1f, 1.0f, 0.0f));
    if (sp.half) in[0] = Half(in[0]);
    if (sp.axes_input) {
      in.push_back(I64(sp.axes));
      constant.push_back(true);
    }
    OpCase c = Case("reduce",
                    std::string(sp.op) + " x" + Str(sp.x) + " axes" + Str(sp.axes) + " keepdims " +
                        std::to_string(sp.keepdims) + " opset " + std::to_string(sp.opset) +
                        (sp.noop ? " noop_with_empty_axes" : "") + (sp.half ? " f16" : ""),
                    std::move(node), std::move(in), std::move(constant));
    c.opset = sp.opset;
    out.push_back(std::move(c));
  }
}

}  // namespace

void AddTransformerCases(Maker& m, std::vector<OpCase>& out) {
  AddLayerNormCases(m, out);
  AddGatherCases(m, out);
  AddReduceCases(m, out);
}

}  // namespace itkit::test::ops
