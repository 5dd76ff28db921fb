// Convolution cases of the backend-ops harness: nnU-Net's shapes, the shapes our own
// kernels take (strided ConvTranspose, 3x3x3 32 -> 32, the stem), random convolutions
// and transposed convolutions, FusedConv with Z.
#include <sstream>

#include "op_case_maker.h"

namespace itkit::test::ops {
namespace {

struct ConvSpec {
  bool transpose = false;
  int64_t n = 1, cin = 4, cout = 4, group = 1;
  std::vector<int64_t> in, k, s, d, pads, output_padding;  // pads: begin..., end...
  bool bias = true, const_weights = true, half = false;
  std::string act;  // "" = plain Conv; otherwise FusedConv with this activation ("None" = none)
  float alpha = 0.01f;
  bool z = false;   // FusedConv with Z (input 3, Y's shape): Y = act(conv + B + Z)
};

OpCase ConvCase(Maker& m, const ConvSpec& sp) {
  const size_t nd = sp.in.size();
  Shape x = {sp.n, sp.cin};
  x.insert(x.end(), sp.in.begin(), sp.in.end());
  Shape w = sp.transpose ? Shape{sp.cin, sp.cout / sp.group} : Shape{sp.cout, sp.cin / sp.group};
  w.insert(w.end(), sp.k.begin(), sp.k.end());
  const bool fused = !sp.act.empty();
  Node node = MakeNode(sp.transpose ? "ConvTranspose" : (fused ? "FusedConv" : "Conv"), sp.z ? 4 : (sp.bias ? 3 : 2),
                       1, fused ? kItkitDomain : "");
  node.attrs.SetInts("kernel_shape", sp.k);
  node.attrs.SetInts("strides", sp.s);
  node.attrs.SetInts("dilations", sp.d);
  node.attrs.SetInts("pads", sp.pads);
  node.attrs.SetInt("group", sp.group);
  if (!sp.output_padding.empty()) node.attrs.SetInts("output_padding", sp.output_padding);
  if (fused && sp.act != "None") node.attrs.SetString("activation", sp.act);
  if (sp.act == "LeakyRelu") node.attrs.SetFloat("alpha", sp.alpha);
  // Weights scaled so outputs stay O(1) whatever the fan-in.
  int64_t fan_in = (sp.transpose ? sp.cout / sp.group : sp.cin / sp.group);
  for (int64_t k : sp.k) fan_in *= k;
  const float ws = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(fan_in, 1)));
  std::vector<Tensor> inputs = {m.Signed(x), m.Signed(w, 0.1f * ws, ws)};
  if (sp.bias) inputs.push_back(m.Signed({sp.cout}, 0.1f, 0.5f));
  if (sp.z) {
    if (!sp.bias) {
      inputs.emplace_back();  // omitted B
      node.inputs[2].clear();
    }
    Shape y = {sp.n, sp.cout};
    for (size_t a = 0; a < nd; ++a)
      y.push_back((sp.in[a] + sp.pads[a] + sp.pads[a + nd] - ((sp.k[a] - 1) * sp.d[a] + 1)) / sp.s[a] + 1);
    inputs.push_back(m.Signed(y));
  }
  if (sp.half)
    for (Tensor& t : inputs)
      if (t.dtype() != DType::kUndefined) t = Half(t);
  std::ostringstream name;
  name << node.op_type << nd << "d" << (sp.half ? " f16" : "") << " x" << Str(x) << " w" << Str(w) << " s"
       << Str(sp.s) << " d" << Str(sp.d) << " p" << Str(sp.pads) << " g" << sp.group;
  if (!sp.output_padding.empty()) name << " op" << Str(sp.output_padding);
  if (fused) name << " act=" << sp.act;
  if (sp.z) name << " +Z";
  if (!sp.bias) name << " nobias";
  if (!sp.const_weights) name << " runtime-weights";
  OpCase c = Case("conv", name.str(), std::move(node), std::move(inputs), {false, sp.const_weights, sp.const_weights});
  c.matrix = true;
  c.tol = 2e-5;
  for (size_t i = 0; i < nd; ++i)
    if (sp.pads[i] != sp.pads[i + nd]) c.core = false;  // cuDNN pads symmetrically
  for (size_t i = 0; i < sp.output_padding.size(); ++i)
    if (sp.output_padding[i] >= sp.s[i]) c.core = false;
  return c;
}

// An f16 3x3x3 convolution, stride 1, padding 1 (output = input extent), LeakyReLU's
// alpha 0.1 where it has one: the shapes our own 3x3x3 kernels take.
ConvSpec SameHalf3x3x3(int64_t n, int64_t cin, int64_t cout, std::vector<int64_t> in, bool bias, std::string act) {
  ConvSpec sp;
  sp.n = n;
  sp.cin = cin;
  sp.cout = cout;
  sp.in = std::move(in);
  sp.k = {3, 3, 3};
  sp.s = sp.d = {1, 1, 1};
  sp.pads = {1, 1, 1, 1, 1, 1};
  sp.bias = bias;
  sp.act = std::move(act);
  sp.alpha = 0.1f;
  sp.half = true;
  return sp;
}

// The case just added once more with Y written over Z, as the planner places it when Z
// dies at the convolution (cuDNN then accumulates onto Z: beta = 1).
void AddOverZ(std::vector<OpCase>& out) {
  OpCase over = out.back();
  over.name += " Y-over-Z";
  over.output_over_input = true;
  out.push_back(std::move(over));
}

}  // namespace

void AddConvCases(Maker& m, std::vector<OpCase>& out) {
  // nnU-Net's shapes (batch 2, 32 channels; stem with one input channel; k2s2 up).
  auto fixed = [&](bool transpose, int64_t cin, int64_t cout, int64_t edge, int64_t k, int64_t s, int64_t p,
                   std::string act, bool half) {
    ConvSpec sp;
    sp.transpose = transpose;
    sp.n = 2;
    sp.cin = cin;
    sp.cout = cout;
    sp.in = {edge, edge, edge};
    sp.k = {k, k, k};
    sp.s = {s, s, s};
    sp.d = {1, 1, 1};
    sp.pads = {p, p, p, p, p, p};
    sp.act = std::move(act);
    sp.half = half;
    out.push_back(ConvCase(m, sp));
  };
  for (bool half : {false, true}) {
    fixed(false, 32, 32, 12, 3, 1, 1, "", half);
    fixed(false, 1, 32, 12, 3, 1, 1, "", half);
    fixed(false, 32, 64, 12, 3, 2, 1, "LeakyRelu", half);
    fixed(false, 32, 3, 8, 1, 1, 0, "", half);
    fixed(true, 64, 32, 6, 2, 2, 0, "", half);
  }
  // ConvTranspose with kernel == stride: the shapes our GEMM kernel takes in FP16
  // channels-last (conv_transpose_strided.cu), including partial tiles, a partial K
  // step, odd channel counts (element-wise loads and stores), anisotropic, 2-D and 1-D.
  auto strided_up = [&](int64_t n, int64_t cin, int64_t cout, std::vector<int64_t> in, std::vector<int64_t> k,
                        bool bias, bool half) {
    ConvSpec sp;
    sp.transpose = true;
    sp.n = n;
    sp.cin = cin;
    sp.cout = cout;
    sp.in = std::move(in);
    sp.k = k;
    sp.s = k;
    sp.d.assign(sp.k.size(), 1);
    sp.pads.assign(2 * sp.k.size(), 0);
    sp.bias = bias;
    sp.half = half;
    out.push_back(ConvCase(m, sp));
  };
  strided_up(2, 64, 32, {5, 6, 7}, {2, 2, 2}, true, false);
  strided_up(1, 40, 16, {3, 4, 5}, {1, 2, 2}, true, true);
  strided_up(1, 3, 5, {3, 3, 3}, {2, 2, 2}, false, false);
  strided_up(2, 8, 6, {5, 7}, {3, 2}, true, false);
  strided_up(1, 16, 70, {9}, {2}, true, false);
  // 3x3x3, stride 1, padding 1, 32 -> 32: the shapes our tiled kernel takes in FP16
  // channels-last (conv3_c32.cu): row and column tiles cut short (10 rows of 8, 70
  // columns of 64), a depth of one (only the centre plane inside), an activation and
  // Z in its store.
  auto conv3 = [&](int64_t n, std::vector<int64_t> in, bool bias, std::string act, bool z) {
    ConvSpec sp = SameHalf3x3x3(n, 32, 32, std::move(in), bias, std::move(act));
    sp.z = z;
    out.push_back(ConvCase(m, sp));
  };
  conv3(1, {4, 10, 70}, true, "LeakyRelu", true);
  AddOverZ(out);
  conv3(2, {3, 17, 9}, true, "Relu", false);
  conv3(1, {1, 5, 66}, false, "", false);
  // The kernel is compiled once per activation: each one once.
  conv3(1, {2, 3, 9}, true, "Sigmoid", false);
  conv3(1, {2, 3, 9}, false, "Tanh", true);
  conv3(1, {2, 3, 9}, true, "Gelu", false);
  conv3(1, {2, 3, 9}, true, "None", true);
  for (int i = 0; i < 36; ++i) {
    ConvSpec sp;
    sp.transpose = i % 4 == 3;
    const int64_t nd = m.Pick<int64_t>({1, 2, 3, 3});
    sp.n = m.Int(1, 2);
    sp.group = m.Coin(0.2) ? 2 : 1;
    sp.cin = sp.group * m.Pick<int64_t>({1, 2, 3, 4, 8});
    sp.cout = sp.group * m.Pick<int64_t>({1, 2, 4, 8});
    for (int64_t a = 0; a < nd; ++a) {
      const int64_t k = m.Pick<int64_t>({1, 2, 3, 3});
      const int64_t s = m.Pick<int64_t>({1, 1, 2});
      const int64_t d = !sp.transpose && m.Coin(0.2) ? 2 : 1;
      sp.k.push_back(k);
      sp.s.push_back(s);
      sp.d.push_back(d);
      sp.in.push_back(m.Int((k - 1) * d + 1, nd == 3 ? 9 : 16));
    }
    for (int64_t a = 0; a < nd; ++a) sp.pads.push_back(m.Int(0, (sp.k[a] - 1) * sp.d[a] / 2));
    for (int64_t a = 0; a < nd; ++a) sp.pads.push_back(m.Coin(0.1) ? sp.pads[a] + 1 : sp.pads[a]);
    if (sp.transpose && m.Coin(0.3))
      for (int64_t a = 0; a < nd; ++a) sp.output_padding.push_back(sp.s[a] > 1 ? m.Int(0, sp.s[a] - 1) : 0);
    sp.bias = m.Coin(0.7);
    sp.const_weights = m.Coin(0.8);
    sp.half = m.Coin(0.15);
    if (!sp.transpose && m.Coin(0.5)) {
      sp.act = m.Pick<std::string>({"None", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu"});
      sp.alpha = m.Real(0.01f, 0.3f);
    }
    out.push_back(ConvCase(m, sp));
  }
  // FusedConv with Z: the parts of a convolution split over a Concat
  // (split_conv_over_concat), the nnU-Net decoder's shape first.
  for (bool half : {false, true}) {
    ConvSpec sp;
    sp.n = 2;
    sp.cin = sp.cout = 32;
    sp.in = {12, 12, 12};
    sp.k = {3, 3, 3};
    sp.s = sp.d = {1, 1, 1};
    sp.pads = {1, 1, 1, 1, 1, 1};
    sp.bias = false;
    sp.act = "None";
    sp.z = true;
    sp.half = half;
    out.push_back(ConvCase(m, sp));
    AddOverZ(out);
  }
  for (int i = 0; i < 8; ++i) {
    ConvSpec sp;
    const int64_t nd = m.Pick<int64_t>({2, 3, 3});
    sp.n = m.Int(1, 2);
    sp.cin = m.Pick<int64_t>({1, 3, 4, 8});
    sp.cout = m.Pick<int64_t>({1, 2, 4, 8});
    for (int64_t a = 0; a < nd; ++a) {
      sp.k.push_back(m.Pick<int64_t>({1, 3}));
      sp.s.push_back(m.Pick<int64_t>({1, 1, 2}));
      sp.d.push_back(1);
      sp.in.push_back(m.Int(sp.k.back(), nd == 3 ? 9 : 16));
    }
    for (int64_t a = 0; a < 2 * nd; ++a) sp.pads.push_back(sp.k[static_cast<size_t>(a % nd)] / 2);
    sp.bias = m.Coin(0.5);
    sp.const_weights = m.Coin(0.8);
    sp.half = m.Coin(0.25);
    sp.act = m.Pick<std::string>({"None", "Relu", "LeakyRelu", "Sigmoid"});
    sp.alpha = m.Real(0.01f, 0.3f);
    sp.z = true;
    out.push_back(ConvCase(m, sp));
    AddOverZ(out);
  }
}

void AddStemConvCases(Maker& m, std::vector<OpCase>& out) {
  // 3x3x3 stem convolutions, 1-4 -> 16 or 32 channels (conv3_stem.cu in FP16
  // channels-last): odd widths (a last item of one voxel), a width of one, each
  // activation once.
  auto stem = [&](int64_t n, int64_t cin, int64_t cout, std::vector<int64_t> in, bool bias, std::string act) {
    out.push_back(ConvCase(m, SameHalf3x3x3(n, cin, cout, std::move(in), bias, std::move(act))));
  };
  stem(2, 1, 32, {5, 6, 9}, false, "");
  stem(1, 2, 16, {3, 7, 1}, true, "LeakyRelu");
  stem(1, 3, 32, {1, 4, 5}, true, "Relu");
  stem(1, 4, 16, {2, 3, 7}, false, "Sigmoid");
  stem(1, 1, 16, {2, 2, 3}, true, "Tanh");
  stem(1, 4, 32, {2, 3, 3}, true, "Gelu");
}

}  // namespace itkit::test::ops
