// Random op cases for the backend-ops harness: every op family the CUDA backend
// implements, random shapes and attributes, random data that is never zero (values
// of magnitude 0.1-1 with random signs unless an op needs positive inputs), f16
// variants, and the nnU-Net shapes (32 channels, 3x3x3, stride 2, k2s2 transposed).
// The fusion passes' ops (GroupNorm with a residual, FusedElementwise) come last, so
// adding them left the random draws of every earlier case unchanged.
#include <iterator>
#include <random>
#include <sstream>

#include "itkit/fused_elementwise.h"
#include "op_case_maker.h"

namespace itkit::test::ops {
namespace {

// ---- norm --------------------------------------------------------------------------

void AddNormCases(Maker& m, std::vector<OpCase>& out) {
  struct Spec {
    Shape x;
    int64_t groups;  // 0: InstanceNormalization
    std::string act;
    float offset;    // mean of the data: large values test the statistics' stability
    bool half;
  };
  std::vector<Spec> specs = {{{2, 32, 12, 12, 12}, 0, "", 0.0f, false},
                             {{2, 32, 12, 12, 12}, 32, "LeakyRelu", 0.0f, false},
                             {{1, 4, 32, 32, 32}, 0, "", 0.0f, false},      // several partials per group
                             {{1, 16, 32, 32, 16}, 4, "Relu", 0.0f, false},
                             {{2, 8, 10, 10, 10}, 2, "", 100.0f, false},    // mean 100, std ~0.6
                             {{2, 8, 10, 10, 10}, 8, "LeakyRelu", 0.0f, true},
                             {{1, 6, 9, 11}, 3, "Gelu", 0.0f, false},
                             {{3, 4, 17}, 2, "Sigmoid", 0.0f, false},
                             {{2, 6}, 3, "Tanh", 0.0f, false}};
  for (int i = 0; i < 6; ++i) {
    const int64_t c = m.Pick<int64_t>({2, 4, 6, 8, 12});
    Shape x = {m.Int(1, 3), c};
    for (int64_t a = 0, nd = m.Int(1, 3); a < nd; ++a) x.push_back(m.Int(1, 14));
    int64_t g = 0;  // 0: one channel per group
    if (!m.Coin(0.3)) {
      std::vector<int64_t> divisors;
      for (int64_t d = 1; d <= c; ++d)
        if (c % d == 0) divisors.push_back(d);
      g = divisors[static_cast<size_t>(m.Int(0, static_cast<int64_t>(divisors.size()) - 1))];
    }
    specs.push_back({x, g, m.Pick<std::string>({"", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu"}), 0.0f,
                     m.Coin(0.2)});
  }
  for (const Spec& sp : specs) {
    const int64_t C = sp.x[1];
    const bool instance = sp.groups == 0 && sp.act.empty();
    const int64_t groups = sp.groups == 0 ? C : sp.groups;
    Node node = MakeNode(instance ? "InstanceNormalization" : "GroupNorm", 3, 1, instance ? "" : kItkitDomain);
    const float eps = m.Pick<float>({1e-5f, 1e-3f});
    node.attrs.SetFloat("epsilon", eps);
    if (!instance) node.attrs.SetInt("num_groups", groups);
    if (!sp.act.empty()) node.attrs.SetString("activation", sp.act);
    if (sp.act == "LeakyRelu") node.attrs.SetFloat("alpha", 0.01f);
    std::vector<Tensor> inputs = {m.Signed(sp.x, 0.1f, 1.0f, sp.offset), m.Signed({C}, 0.5f, 1.5f),
                                  m.Signed({C}, 0.1f, 0.5f)};
    if (sp.half) inputs[0] = Half(inputs[0]);
    std::ostringstream name;
    name << node.op_type << (sp.half ? " f16" : "") << " x" << Str(sp.x) << " groups " << groups;
    if (!sp.act.empty()) name << " act=" << sp.act;
    if (sp.offset != 0.0f) name << " mean " << sp.offset;
    OpCase oc = Case("norm", name.str(), std::move(node), std::move(inputs), {false, true, true});
    oc.tol = sp.offset != 0.0f ? 1e-4 : 2e-5;
    out.push_back(std::move(oc));
  }
  for (int i = 0; i < 3; ++i) {
    const int64_t C = m.Int(1, 8);
    Shape x = {m.Int(1, 3), C, m.Int(1, 9), m.Int(1, 9)};
    Node node = MakeNode("BatchNormalization", 5);
    node.attrs.SetFloat("epsilon", 1e-5f);
    out.push_back(Case("norm", "BatchNormalization x" + Str(x), std::move(node),
                       {m.Signed(x), m.Signed({C}, 0.5f, 1.5f), m.Signed({C}), m.Signed({C}), m.Positive({C}, 0.5f, 2.0f)},
                       {false, true, true, true, true}));
  }
}

// ---- elementwise -------------------------------------------------------------------

Shape RandomShape(Maker& m, int min_rank = 1, int max_rank = 5, int64_t max_dim = 9) {
  Shape s;
  for (int64_t a = 0, r = m.Int(min_rank, max_rank); a < r; ++a) s.push_back(m.Int(1, max_dim));
  return s;
}

void AddUnaryCases(Maker& m, std::vector<OpCase>& out) {
  struct U {
    const char* op;
    int domain;  // 0: signed, 1: positive, 2: signed up to 3
  };
  const U ops[] = {{"Relu", 0},     {"LeakyRelu", 0}, {"Sigmoid", 2},  {"Tanh", 2},     {"Erf", 2},
                   {"Exp", 2},      {"Log", 1},       {"Sqrt", 1},     {"Abs", 0},      {"Neg", 0},
                   {"Reciprocal", 0}, {"Floor", 2},   {"Ceil", 2},     {"Round", 2},    {"Softplus", 2},
                   {"Softsign", 2}, {"Elu", 2},       {"Selu", 2},     {"HardSigmoid", 2}, {"HardSwish", 2},
                   {"Sin", 2},      {"Cos", 2},       {"Identity", 0}, {"Dropout", 0}};
  for (const U& u : ops) {
    for (bool half : {false, true}) {
      if (half && !m.Coin(0.3)) continue;
      const Shape s = RandomShape(m);
      Tensor x = u.domain == 1 ? m.Positive(s, 0.1f, 2.0f) : m.Signed(s, 0.1f, u.domain == 2 ? 3.0f : 1.0f);
      Node node = MakeNode(u.op, 1);
      if (std::string(u.op) == "LeakyRelu") node.attrs.SetFloat("alpha", m.Real(0.01f, 0.3f));
      if (std::string(u.op) == "Elu") node.attrs.SetFloat("alpha", m.Real(0.5f, 1.5f));
      if (half) x = Half(x);
      OpCase c = Case("unary", std::string(u.op) + (half ? " f16" : "") + " x" + Str(s), std::move(node), {x});
      c.tol = 1e-5;
      out.push_back(std::move(c));
    }
  }
  // Clip: opset 13 with constant min/max inputs, and opset 6 attributes.
  {
    const Shape s = RandomShape(m);
    Node node = MakeNode("Clip", 3);
    out.push_back(Case("unary", "Clip13 x" + Str(s), std::move(node),
                       {m.Signed(s), Tensor::FromVector(std::vector<float>{-0.5f}, {}).value(),
                        Tensor::FromVector(std::vector<float>{0.4f}, {}).value()},
                       {false, true, true}));
    const Shape s2 = RandomShape(m);
    Node old = MakeNode("Clip", 1);
    old.attrs.SetFloat("min", -0.3f);
    old.attrs.SetFloat("max", 0.6f);
    OpCase c = Case("unary", "Clip6 x" + Str(s2), std::move(old), {m.Signed(s2)});
    c.opset = 6;
    out.push_back(std::move(c));
  }
  // Cast between float types.
  for (int64_t to : {10, 1}) {
    const Shape s = RandomShape(m);
    Node node = MakeNode("Cast", 1);
    node.attrs.SetInt("to", to);
    Tensor x = m.Signed(s);
    if (to == 1) x = Half(x);
    out.push_back(Case("unary", std::string("Cast to ") + (to == 10 ? "f16" : "f32") + " x" + Str(s), std::move(node),
                       {x}));
  }
}

void AddBinaryCases(Maker& m, std::vector<OpCase>& out) {
  const char* ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"};
  for (const char* op : ops) {
    for (int pattern = 0; pattern < 5; ++pattern) {
      Shape a, b;
      const int64_t N = m.Int(1, 2), C = m.Int(1, 6), D = m.Int(1, 7), H = m.Int(1, 7), W = m.Int(1, 9);
      switch (pattern) {
        case 0: a = b = {N, C, D, H, W}; break;            // same shape
        case 1: a = {N, C, D, H, W}; b = {1, C, 1, 1, 1}; break;  // per-channel
        case 2: a = {N, C, H, W}; b = {C, 1, 1}; break;
        case 3: a = {N, C, H, W}; b = {1}; break;          // scalar-like
        case 4: a = {C, 1, W}; b = {H, 1}; break;           // both sides broadcast
      }
      const std::string o(op);
      if (o == "PRelu" && pattern == 4) continue;  // the slope must broadcast to X
      if (m.Coin(0.5) && o != "PRelu") std::swap(a, b);
      const bool half = (o == "Add" || o == "Mul") && pattern < 2;
      Tensor ta = o == "Pow" ? m.Positive(a, 0.2f, 2.0f) : m.Signed(a);
      Tensor tb = o == "Pow" ? m.Positive(b, 0.5f, 2.0f) : m.Signed(b);
      if (half) {
        ta = Half(ta);
        tb = Half(tb);
      }
      OpCase c = Case("binary", o + (half ? " f16 " : " ") + Str(a) + " " + Str(b), MakeNode(op, 2), {ta, tb});
      c.tol = 1e-6;
      out.push_back(std::move(c));
    }
  }
}

// ---- resize, pool, softmax, argmax ----------------------------------------------------

void AddResizeCases(Maker& m, std::vector<OpCase>& out) {
  const char* coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"};
  const char* nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  for (int i = 0; i < 16; ++i) {
    const bool linear = i % 2 == 0;
    const int64_t nd = m.Pick<int64_t>({2, 3});
    Shape x = {m.Int(1, 2), m.Int(1, 3)};
    for (int64_t a = 0; a < nd; ++a) x.push_back(m.Int(2, 9));
    Node node = MakeNode("Resize", 4, 1, "", {true, false, true, true});
    node.attrs.SetString("mode", linear ? "linear" : "nearest");
    const std::string coord = coords[m.Int(0, 3)];
    node.attrs.SetString("coordinate_transformation_mode", coord);
    if (!linear) node.attrs.SetString("nearest_mode", nearest[m.Int(0, 3)]);
    const bool by_sizes = m.Coin(0.4);
    Tensor scales, sizes;
    std::ostringstream name;
    name << "Resize " << (linear ? "linear" : "nearest ") << (linear ? "" : node.attrs.GetString("nearest_mode", ""))
         << " " << coord << " x" << Str(x);
    if (by_sizes) {
      std::vector<int64_t> sz = {x[0], x[1]};
      for (int64_t a = 0; a < nd; ++a) sz.push_back(m.Int(1, 15));
      sizes = I64(sz);
      scales = Tensor::Allocate(DType::kF32, {0}).value();  // empty: "not given"
      name << " sizes" << Str(sz);
      node.inputs[2] = "";
    } else {
      std::vector<float> sc = {1.0f, 1.0f};
      for (int64_t a = 0; a < nd; ++a) sc.push_back(m.Pick<float>({2.0f, 0.5f, 1.5f, 3.0f, 1.0f}));
      scales = F32(sc);
      name << " scales";
      for (float v : sc) name << " " << v;
      node.inputs[3] = "";
    }
    out.push_back(Case("resize", name.str(), std::move(node),
                       {m.Signed(x), Tensor(), by_sizes ? Tensor() : scales, by_sizes ? sizes : Tensor()},
                       {false, true, true, true}));
  }
}

void AddPoolCases(Maker& m, std::vector<OpCase>& out) {
  for (int i = 0; i < 14; ++i) {
    const bool max = i % 2 == 0;
    const int64_t nd = m.Pick<int64_t>({1, 2, 3, 3});
    Shape x = {m.Int(1, 2), m.Int(1, 4)};
    std::vector<int64_t> k, s, d, pads(2 * static_cast<size_t>(nd));
    for (int64_t a = 0; a < nd; ++a) {
      k.push_back(m.Pick<int64_t>({2, 3}));
      s.push_back(m.Pick<int64_t>({1, 2}));
      d.push_back(max && m.Coin(0.2) ? 2 : 1);
      x.push_back(m.Int((k.back() - 1) * d.back() + 1, 11));
    }
    for (int64_t a = 0; a < nd; ++a) {
      pads[static_cast<size_t>(a)] = m.Int(0, k[static_cast<size_t>(a)] / 2);
      pads[static_cast<size_t>(a + nd)] = m.Int(0, k[static_cast<size_t>(a)] / 2);
    }
    Node node = MakeNode(max ? "MaxPool" : "AveragePool", 1);
    node.attrs.SetInts("kernel_shape", k);
    node.attrs.SetInts("strides", s);
    node.attrs.SetInts("pads", pads);
    if (max) node.attrs.SetInts("dilations", d);
    const bool ceil = m.Coin(0.3), include_pad = !max && m.Coin(0.5);
    node.attrs.SetInt("ceil_mode", ceil ? 1 : 0);
    if (!max) node.attrs.SetInt("count_include_pad", include_pad ? 1 : 0);
    std::ostringstream name;
    name << node.op_type << " x" << Str(x) << " k" << Str(k) << " s" << Str(s) << " p" << Str(pads)
         << (max ? " d" + Str(d) : "") << (ceil ? " ceil" : "") << (include_pad ? " include_pad" : "");
    out.push_back(Case("pool", name.str(), std::move(node), {m.Signed(x)}));
  }
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool"}) {
    const Shape x = {2, 3, m.Int(1, 9), m.Int(1, 9), m.Int(1, 40)};
    out.push_back(Case("pool", std::string(op) + " x" + Str(x), MakeNode(op, 1), {m.Signed(x)}));
  }
}

void AddSoftmaxArgCases(Maker& m, std::vector<OpCase>& out) {
  struct S {
    Shape x;
    int64_t axis, opset;
  };
  const S specs[] = {{{2, 4, 6, 7, 5}, 1, 13}, {{3, 5, 300}, -1, 13}, {{2, 3, 4, 5}, 1, 11}, {{1, 3, 8, 8}, 1, 13}};
  for (const S& sp : specs) {
    for (const char* op : {"Softmax", "LogSoftmax"}) {
      Node node = MakeNode(op, 1);
      node.attrs.SetInt("axis", sp.axis);
      OpCase c = Case("softmax", std::string(op) + " x" + Str(sp.x) + " axis " + std::to_string(sp.axis) + " opset " +
                                     std::to_string(sp.opset),
                      std::move(node), {m.Signed(sp.x, 0.1f, 5.0f)});
      c.opset = sp.opset;
      c.tol = 1e-5;
      out.push_back(std::move(c));
    }
  }
  for (int i = 0; i < 8; ++i) {
    const Shape x = i < 2 ? Shape{2, 3, 8, 9, 10} : RandomShape(m, 1, 4, 12);
    const bool is_min = i % 3 == 2;
    Node node = MakeNode(is_min ? "ArgMin" : "ArgMax", 1);
    const int64_t axis = i < 2 ? 1 : m.Int(-static_cast<int64_t>(x.size()), static_cast<int64_t>(x.size()) - 1);
    const int64_t keep = i == 0 ? 0 : m.Int(0, 1), last = m.Int(0, 1);
    node.attrs.SetInt("axis", axis);
    node.attrs.SetInt("keepdims", keep);
    node.attrs.SetInt("select_last_index", last);
    // Named before the call: the node argument may be moved from before the name is built.
    const std::string name = node.op_type + " x" + Str(x) + " axis " + std::to_string(axis) + " keepdims " +
                             std::to_string(keep) + " last " + std::to_string(last);
    out.push_back(Case("argmax", name, std::move(node), {m.Signed(x)}));
  }
}

// ---- matmul, tensor ops ----------------------------------------------------------------

void AddMatMulCases(Maker& m, std::vector<OpCase>& out) {
  const int64_t M = m.Int(1, 40), K = m.Int(1, 70), N = m.Int(1, 50), B = m.Int(2, 4);
  const std::pair<Shape, Shape> shapes[] = {{{M, K}, {K, N}},        {{B, M, K}, {B, K, N}},
                                            {{2, B, M, K}, {K, N}},  {{M, K}, {B, K, N}},
                                            {{K}, {B, K, N}},        {{B, M, K}, {K}},
                                            {{K}, {K}},              {{2, 1, M, K}, {1, B, K, N}}};
  for (const auto& [a, b] : shapes) {
    OpCase c = Case("matmul", "MatMul " + Str(a) + " " + Str(b), MakeNode("MatMul", 2), {m.Signed(a), m.Signed(b)});
    c.matrix = true;
    c.tol = 2e-5;
    c.core = !(a.size() == 4 && b.size() == 4);  // mixed batch broadcast stays on the CPU
    out.push_back(std::move(c));
  }
  for (int i = 0; i < 6; ++i) {
    const bool ta = i & 1, tb = i & 2;
    const Shape a = ta ? Shape{K, M} : Shape{M, K}, b = tb ? Shape{N, K} : Shape{K, N};
    const Shape cs = m.Pick<Shape>({Shape{N}, Shape{M, N}, Shape{1, N}, Shape{M, 1}});
    Node node = MakeNode("Gemm", i == 5 ? 2 : 3);
    node.attrs.SetInt("transA", ta);
    node.attrs.SetInt("transB", tb);
    node.attrs.SetFloat("alpha", m.Real(0.5f, 2.0f));
    node.attrs.SetFloat("beta", m.Real(0.5f, 2.0f));
    std::vector<Tensor> in = {m.Signed(a), m.Signed(b)};
    if (i != 5) in.push_back(m.Signed(cs));
    OpCase c = Case("matmul", "Gemm " + Str(a) + " " + Str(b) + (i != 5 ? " C" + Str(cs) : "") +
                                  (ta ? " transA" : "") + (tb ? " transB" : ""),
                    std::move(node), std::move(in), {false, true, true});
    c.matrix = true;
    c.tol = 2e-5;
    out.push_back(std::move(c));
  }
}

void AddTensorCases(Maker& m, std::vector<OpCase>& out) {
  // Transpose
  const std::vector<std::vector<int64_t>> perms = {{0, 2, 3, 4, 1}, {0, 4, 1, 2, 3}, {2, 0, 1}, {1, 0}, {0, 1, 3, 2}};
  for (const auto& perm : perms) {
    Shape x;
    for (size_t a = 0; a < perm.size(); ++a) x.push_back(m.Int(1, 9));
    Node node = MakeNode("Transpose", 1);
    node.attrs.SetInts("perm", perm);
    out.push_back(Case("tensor", "Transpose x" + Str(x) + " perm" + Str(perm), std::move(node), {m.Signed(x)}));
  }
  // Slice (opset 13 inputs), negative steps and indices included.
  const Shape sx = {2, 7, 9, 8};
  const std::vector<std::vector<std::vector<int64_t>>> slices = {  // starts, ends, axes, steps
      {{1, 2}, {6, 100}, {1, 3}, {1, 2}},
      {{-1}, {-100}, {2}, {-2}},
      {{0, 1, 1}, {1, -1, 7}, {0, 1, -1}, {1, 3, 1}},
      {{5}, {1}, {1}, {-1}}};
  for (const auto& sl : slices) {
    out.push_back(Case("tensor",
                       "Slice x" + Str(sx) + " starts" + Str(sl[0]) + " ends" + Str(sl[1]) + " axes" + Str(sl[2]) +
                           " steps" + Str(sl[3]),
                       MakeNode("Slice", 5), {m.Signed(sx), I64(sl[0]), I64(sl[1]), I64(sl[2]), I64(sl[3])},
                       {false, true, true, true, true}));
  }
  // Concat: the U-Net skip (channels) and other axes.
  for (int64_t axis : {1, 1, -1, 0}) {
    const Shape base = {2, 3, m.Int(1, 6), m.Int(1, 6), m.Int(1, 6)};
    std::vector<Tensor> in;
    std::string shapes;
    for (int k = 0, n = static_cast<int>(m.Int(2, 3)); k < n; ++k) {
      Shape s = base;
      s[static_cast<size_t>(axis < 0 ? axis + 5 : axis)] = m.Int(1, 5);
      in.push_back(m.Signed(s));
      shapes += " " + Str(s);
    }
    Node node = MakeNode("Concat", in.size());
    node.attrs.SetInt("axis", axis);
    out.push_back(Case("tensor", "Concat axis " + std::to_string(axis) + shapes, std::move(node), std::move(in)));
  }
  // Reshape family.
  {
    const Shape x = {2, 3, 4, 5};
    out.push_back(Case("tensor", "Reshape [2,3,4,5] -> [6,-1]", MakeNode("Reshape", 2), {m.Signed(x), I64({6, -1})},
                       {false, true}));
    Node flat = MakeNode("Flatten", 1);
    flat.attrs.SetInt("axis", 2);
    out.push_back(Case("tensor", "Flatten axis 2 x[2,3,4,5]", std::move(flat), {m.Signed(x)}));
    out.push_back(Case("tensor", "Unsqueeze axes [0,3]", MakeNode("Unsqueeze", 2), {m.Signed(x), I64({0, 3})},
                       {false, true}));
    out.push_back(Case("tensor", "Squeeze axes [1]", MakeNode("Squeeze", 2), {m.Signed({4, 1, 5}), I64({1})},
                       {false, true}));
  }
  // Pad (constant), with cropping; Expand.
  for (int i = 0; i < 3; ++i) {
    const Shape x = {1, 2, m.Int(3, 8), m.Int(3, 8), m.Int(3, 8)};
    std::vector<int64_t> pads = {0, 0, m.Int(0, 2), m.Int(-1, 2), m.Int(0, 2), 0, 0, m.Int(0, 2), m.Int(0, 2),
                                 m.Int(-1, 1)};
    out.push_back(Case("tensor", "Pad x" + Str(x) + " pads" + Str(pads), MakeNode("Pad", 3),
                       {m.Signed(x), I64(pads), Tensor::FromVector(std::vector<float>{m.Real(-1, 1)}, {}).value()},
                       {false, true, true}));
  }
  out.push_back(Case("tensor", "Expand [3,1,5] -> [2,3,4,5]", MakeNode("Expand", 2), {m.Signed({3, 1, 5}),
                                                                                      I64({2, 3, 4, 5})},
                     {false, true}));
}

// ---- fusions: GroupNorm + residual (fuse_norm_residual), FusedElementwise -------------

void AddResidualNormCases(Maker& m, std::vector<OpCase>& out) {
  struct Spec {
    Shape x;
    int64_t groups;  // 0: one channel per group
    std::string act;
    float offset;
    bool half;
  };
  std::vector<Spec> specs = {{{2, 32, 12, 12, 12}, 0, "LeakyRelu", 0.0f, false},  // ResEnc block at nnU-Net width
                             {{2, 32, 12, 12, 12}, 0, "LeakyRelu", 0.0f, true},
                             {{1, 16, 10, 10, 10}, 4, "", 0.0f, false},
                             {{2, 8, 9, 11}, 2, "Relu", 100.0f, false},
                             {{1, 6, 7, 5, 3}, 3, "Sigmoid", 0.0f, true},
                             {{1, 4, 32, 32, 32}, 0, "Tanh", 0.0f, false}};  // several partials per group
  for (int i = 0; i < 3; ++i) {
    const int64_t c = m.Pick<int64_t>({2, 4, 6, 8});
    Shape x = {m.Int(1, 2), c};
    for (int64_t a = 0, nd = m.Int(1, 3); a < nd; ++a) x.push_back(m.Int(1, 13));
    specs.push_back({x, m.Pick<int64_t>({0, 1, 2}), m.Pick<std::string>({"", "Relu", "LeakyRelu", "Sigmoid", "Tanh"}),
                     0.0f, m.Coin(0.3)});
  }
  for (const Spec& sp : specs) {
    const int64_t C = sp.x[1];
    const int64_t groups = sp.groups == 0 ? C : sp.groups;
    Node node = MakeNode("GroupNorm", 4, 1, kItkitDomain);
    node.attrs.SetFloat("epsilon", 1e-5f);
    node.attrs.SetInt("num_groups", groups);
    if (!sp.act.empty()) node.attrs.SetString("activation", sp.act);
    if (sp.act == "LeakyRelu") node.attrs.SetFloat("alpha", 0.01f);
    std::vector<Tensor> inputs = {m.Signed(sp.x, 0.1f, 1.0f, sp.offset), m.Signed({C}, 0.5f, 1.5f),
                                  m.Signed({C}, 0.1f, 0.5f), m.Signed(sp.x, 0.1f, 2.0f)};
    if (sp.half) {
      inputs[0] = Half(inputs[0]);
      inputs[3] = Half(inputs[3]);
    }
    std::ostringstream name;
    name << "GroupNorm+residual" << (sp.half ? " f16" : "") << " x" << Str(sp.x) << " groups " << groups;
    if (!sp.act.empty()) name << " act=" << sp.act;
    if (sp.offset != 0.0f) name << " mean " << sp.offset;
    OpCase oc = Case("norm", name.str(), std::move(node), std::move(inputs), {false, true, true, false});
    oc.tol = sp.offset != 0.0f ? 1e-4 : 2e-5;
    out.push_back(std::move(oc));
  }
}

struct Ins {
  fused::OpCode op;
  int a, b;  // registers; fused::kImmediate reads p
  float p = 0.0f, q = 0.0f;
};

Node FusedNode(int num_inputs, const std::vector<Ins>& code, int broadcast_rank = 0) {
  Node node = MakeNode("FusedElementwise", static_cast<size_t>(num_inputs), 1, kItkitDomain);
  fused::Program program;
  program.num_inputs = num_inputs;
  program.broadcast_rank = broadcast_rank;
  for (const Ins& in : code) {
    fused::Instruction ins;
    ins.op = in.op;
    ins.dst = num_inputs + static_cast<int>(program.code.size());
    ins.a = in.a;
    ins.b = fused::IsBinary(in.op) ? in.b : 0;
    ins.imm0 = in.p;
    ins.imm1 = in.q;
    program.code.push_back(ins);
  }
  fused::WriteProgram(program, node);
  return node;
}

std::string ProgramName(const std::vector<Ins>& code) {
  std::string s;
  for (const Ins& in : code) s += std::string(s.empty() ? "" : ",") + fused::OpCodeName(in.op);
  return s;
}

void AddFusedElementwiseCases(Maker& m, std::vector<OpCase>& out) {
  using Op = fused::OpCode;
  constexpr int kImm = fused::kImmediate;
  auto add = [&](const std::string& what, std::vector<Tensor> inputs, const std::vector<Ins>& code, bool half,
                 int broadcast_rank = 0) {
    std::string shapes;
    for (Tensor& t : inputs) {
      shapes += " " + Str(t.shape());
      if (half) t = Half(t);
    }
    Node node = FusedNode(static_cast<int>(inputs.size()), code, broadcast_rank);
    const std::string name =
        "FusedElementwise " + what + (half ? " f16" : "") + shapes + " [" + ProgramName(code) + "]";
    OpCase c = Case("fused", name, std::move(node), std::move(inputs));
    c.tol = 1e-5;
    out.push_back(std::move(c));
  };
  // The targets of the pass: GELU as torch exports it, Swish, per-channel scale + bias + act.
  const std::vector<Ins> gelu = {{Op::kDiv, 0, kImm, 1.41421353816986083984375f}, {Op::kErf, 1, 0},
                                 {Op::kAdd, 2, kImm, 1.0f}, {Op::kMul, 0, 3}, {Op::kMul, 4, kImm, 0.5f}};
  const std::vector<Ins> swish = {{Op::kSigmoid, 0, 0}, {Op::kMul, 0, 1}};
  const std::vector<Ins> affine = {{Op::kMul, 0, 1}, {Op::kAdd, 3, 2}, {Op::kLeakyRelu, 4, 0, 0.1f}};
  for (bool half : {false, true}) {
    add("gelu", {m.Signed({2, 16, 8, 8, 8}, 0.1f, 3.0f)}, gelu, half);
    add("swish", {m.Signed({2, 16, 8, 8, 8}, 0.1f, 3.0f)}, swish, half);
    add("affine", {m.Signed({2, 8, 6, 6, 6}), m.Signed({1, 8, 1, 1, 1}, 0.5f, 1.5f), m.Signed({8, 1, 1, 1})}, affine,
        half);
  }
  // Both sides broadcast, an immediate of higher rank than the inputs, 8 inputs.
  add("outer", {m.Signed({3, 1, 5}), m.Signed({4, 1})}, {{Op::kAdd, 0, 1}, {Op::kTanh, 2, 0}, {Op::kMul, 3, 0}},
      false);
  add("rank-up", {m.Signed({7})}, {{Op::kMul, 0, kImm, 2.0f}, {Op::kNeg, 1, 0}}, false, 3);
  {
    std::vector<Tensor> in;
    std::vector<Ins> code;
    for (int k = 0; k < 8; ++k) in.push_back(m.Signed(k % 3 == 0 ? Shape{2, 3, 4, 5} : Shape{3, 1, 5}));
    code.push_back({Op::kAdd, 0, 1});
    for (int k = 2; k < 8; ++k) code.push_back({k % 2 ? Op::kSub : Op::kMul, 8 + k - 2, k});
    add("8 inputs", std::move(in), code, false);
  }
  // Every opcode once, on data in its domain (f32: the rounding ops are exact there).
  const std::vector<std::pair<Op, int>> unary = {  // 0: signed, 1: positive
      {Op::kRelu, 0},     {Op::kSigmoid, 0},   {Op::kTanh, 0},     {Op::kErf, 0},         {Op::kExp, 0},
      {Op::kLog, 1},      {Op::kSqrt, 1},      {Op::kAbs, 0},      {Op::kNeg, 0},         {Op::kReciprocal, 0},
      {Op::kFloor, 0},    {Op::kCeil, 0},      {Op::kRound, 0},    {Op::kSoftplus, 0},    {Op::kSoftsign, 0},
      {Op::kHardSwish, 0}, {Op::kSin, 0},      {Op::kCos, 0}};
  for (const auto& [op, domain] : unary) {
    const Shape s = RandomShape(m, 1, 4);
    Tensor x = domain == 1 ? m.Positive(s, 0.1f, 3.0f) : m.Signed(s, 0.1f, 3.0f);
    add("one op", {x}, {{op, 0, 0}, {Op::kAdd, 1, 0}}, false);
  }
  add("params", {m.Signed({4, 9}, 0.1f, 3.0f)},
      {{Op::kLeakyRelu, 0, 0, 0.2f}, {Op::kElu, 0, 0, 0.7f}, {Op::kSelu, 0, 0, 1.6732632f, 1.0507009f},
       {Op::kHardSigmoid, 0, 0, 0.2f, 0.5f}, {Op::kClip, 0, 0, -0.4f, 0.9f}, {Op::kAdd, 1, 2}, {Op::kAdd, 6, 3},
       {Op::kAdd, 7, 4}, {Op::kAdd, 8, 5}},
      false);
  for (Op op : {Op::kAdd, Op::kSub, Op::kMul, Op::kDiv, Op::kPow, Op::kMax, Op::kMin, Op::kPRelu}) {
    const Shape a = {2, 3, 4, 5}, b = m.Pick<Shape>({Shape{2, 3, 4, 5}, Shape{3, 1, 5}, Shape{1}});
    const bool pow = op == Op::kPow;
    add("binary", {pow ? m.Positive(a, 0.2f, 2.0f) : m.Signed(a), pow ? m.Positive(b, 0.5f, 2.0f) : m.Signed(b)},
        {{op, 0, 1}, {Op::kTanh, 2, 0}}, false);
    add("immediate", {pow ? m.Positive(a, 0.2f, 2.0f) : m.Signed(a)}, {{op, kImm, 0, 0.75f}, {op, 1, kImm, 1.5f}},
        false);
  }
  // Random programs over 1-4 broadcasting inputs (ops defined on any finite value).
  const Op safe_unary[] = {Op::kRelu, Op::kLeakyRelu, Op::kSigmoid, Op::kTanh, Op::kErf, Op::kAbs, Op::kNeg,
                           Op::kSoftsign, Op::kHardSwish, Op::kSin, Op::kCos, Op::kSoftplus, Op::kElu};
  const Op safe_binary[] = {Op::kAdd, Op::kSub, Op::kMul, Op::kMax, Op::kMin, Op::kPRelu};
  for (int i = 0; i < 10; ++i) {
    const int num_in = static_cast<int>(m.Int(1, 4));
    const Shape full = {m.Int(1, 3), m.Int(1, 5), m.Int(1, 9), m.Int(1, 9)};
    std::vector<Tensor> in;
    for (int k = 0; k < num_in; ++k) {
      Shape s = full;
      for (int64_t& d : s)
        if (k > 0 && m.Coin(0.4)) d = 1;
      if (k > 0 && m.Coin(0.3)) s.erase(s.begin());
      in.push_back(m.Signed(s));
    }
    std::vector<Ins> code;
    for (int c = 0, len = static_cast<int>(m.Int(2, fused::kMaxInstructions)); c < len; ++c) {
      const int regs = num_in + c;
      const int a = c == 0 ? 0 : regs - 1;  // a chain, with side inputs from any earlier register
      if (m.Coin(0.5)) {
        const Op op = safe_unary[m.Int(0, static_cast<int64_t>(std::size(safe_unary)) - 1)];
        code.push_back({op, a, 0, m.Real(0.05f, 0.5f)});
      } else {
        const Op op = safe_binary[m.Int(0, static_cast<int64_t>(std::size(safe_binary)) - 1)];
        const int b = m.Coin(0.25) ? kImm : static_cast<int>(m.Int(0, regs - 1));
        code.push_back({op, a, b, m.Real(-1.0f, 1.0f)});
      }
    }
    add("random", std::move(in), code, m.Coin(0.3));
  }
}

}  // namespace

std::vector<OpCase> MakeCases(uint32_t seed) {
  Maker m(seed);
  std::vector<OpCase> cases;
  AddConvCases(m, cases);
  AddNormCases(m, cases);
  AddUnaryCases(m, cases);
  AddBinaryCases(m, cases);
  AddResizeCases(m, cases);
  AddPoolCases(m, cases);
  AddSoftmaxArgCases(m, cases);
  AddMatMulCases(m, cases);
  AddTensorCases(m, cases);
  AddResidualNormCases(m, cases);
  AddFusedElementwiseCases(m, cases);
  AddStemConvCases(m, cases);
  AddTransformerCases(m, cases);
  return cases;
}

}  // namespace itkit::test::ops
