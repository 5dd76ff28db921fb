// 3-D convolutions at the benchmark nnU-Net's shapes (batch 1, 128^3 patch), through
// the CPU backend's kernel choice (oneDNN, reorders from/to plain NCDHW included),
// and the whole U-Net's conv + norm sequence as an estimate of the model's time.
#include <cmath>
#include <string>

#include "bench_util.h"
#include "cpu/conv_kernels.h"

namespace itkit::bench {
namespace {

struct ConvShape {
  const char* name;
  int64_t cin, cout, size, stride, kernel;
  bool transpose;
};

const ConvShape kShapes[] = {
    {"1to32_128", 1, 32, 128, 1, 3, false},      {"32to32_128", 32, 32, 128, 1, 3, false},
    {"64to32_128", 64, 32, 128, 1, 3, false},    {"32to64_s2_128", 32, 64, 128, 2, 3, false},
    {"64to64_64", 64, 64, 64, 1, 3, false},      {"128to128_32", 128, 128, 32, 1, 3, false},
    {"256to256_16", 256, 256, 16, 1, 3, false},  {"320to320_8", 320, 320, 8, 1, 3, false},
    {"320to320_4", 320, 320, 4, 1, 3, false},    {"32to3_head_128", 32, 3, 128, 1, 1, false},
    {"tconv_64to32_64", 64, 32, 64, 2, 2, true}, {"tconv_320to320_4", 320, 320, 4, 2, 2, true},
};

Node ConvNode(int64_t kernel, int64_t stride, bool transpose) {
  Node node;
  node.name = "bench_conv";
  node.op_type = transpose ? "ConvTranspose" : "Conv";
  node.inputs = {"x", "w", "b"};
  node.outputs = {"y"};
  node.attrs.SetInts("strides", {stride, stride, stride});
  const int64_t pad = transpose ? 0 : kernel / 2;
  node.attrs.SetInts("pads", {pad, pad, pad, pad, pad, pad});
  return node;
}

Shape WeightShape(int64_t cin, int64_t cout, int64_t k, bool transpose) {
  return transpose ? Shape{cin, cout, k, k, k} : Shape{cout, cin, k, k, k};
}

void BM_Conv(benchmark::State& state, ConvShape s, cpu::ConvImpl impl) {
  NodeRunner r;
  const int64_t n = s.size;
  const float wscale = 1.0f / std::sqrt(static_cast<float>(s.cin * s.kernel * s.kernel * s.kernel));
  if (!r.Init(ConvNode(s.kernel, s.stride, s.transpose),
              {RandomTensor({1, s.cin, n, n, n}, 1.0f, 1), RandomTensor(WeightShape(s.cin, s.cout, s.kernel, s.transpose), wscale, 2),
               RandomTensor({s.cout}, 0.1f, 3)},
              {false, true, true}, Tensor(),
              [&](const NodeSignature& sig) { return cpu::CreateConvKernel(sig, s.transpose, impl); }) ||
      !r.Run()) {  // the warm-up run also faults in output and workspace pages
    state.SkipWithError(r.error().c_str());
    return;
  }
  for (auto _ : state) {
    if (!r.Run()) {
      state.SkipWithError(r.error().c_str());
      return;
    }
  }
  // MACs: every output voxel (Conv) / input voxel (ConvTranspose) times k^3 * cin * cout.
  const int64_t vox = s.transpose ? n * n * n : (n / s.stride) * (n / s.stride) * (n / s.stride);
  SetGflops(state, 2.0 * static_cast<double>(vox) * static_cast<double>(s.cin * s.cout) *
                       static_cast<double>(s.kernel * s.kernel * s.kernel));
}

// The reference U-Net (tests/models/reference_unet.py): per stage two
// Conv -> InstanceNorm(+LeakyReLU) blocks, decoder ConvTranspose + concat + two
// blocks, 1x1x1 head. Runs every layer in order over two shared activation buffers
// (concat copies are not modelled); the sum approximates the model's kernel time.
struct Layer {
  NodeRunner conv, norm;
  bool has_norm = false;
};

void BM_UNetConvNormSequence(benchmark::State& state) {
  const int64_t patch = state.range(0);
  const int64_t ch[] = {32, 64, 128, 256, 320, 320};
  std::vector<std::unique_ptr<Layer>> layers;
  double flops = 0;
  // Activation buffers big enough for the largest tensor (64 channels at full size).
  const int64_t max_elems = 64 * patch * patch * patch;
  Tensor buf_a = RandomTensor({max_elems}, 1.0f, 7), buf_b = RandomTensor({max_elems}, 1.0f, 8);
  bool ok = true;
  std::string error;
  uint32_t seed = 100;
  auto add = [&](int64_t cin, int64_t cout, int64_t size_in, int64_t stride, int64_t k, bool transpose, bool norm) {
    if (!ok) return;
    auto layer = std::make_unique<Layer>();
    const int64_t size_out = transpose ? size_in * stride : size_in / stride;
    const float wscale = 1.0f / std::sqrt(static_cast<float>(cin * k * k * k));
    Tensor x = Tensor::View(DType::kF32, {1, cin, size_in, size_in, size_in}, buf_a.raw());
    Tensor y = Tensor::View(DType::kF32, {1, cout, size_out, size_out, size_out}, buf_b.raw());
    ok = layer->conv.Init(ConvNode(k, stride, transpose),
                          {x, RandomTensor(WeightShape(cin, cout, k, transpose), wscale, ++seed), RandomTensor({cout}, 0.1f, ++seed)},
                          {false, true, true}, y);
    if (!ok) error = layer->conv.error();
    const int64_t out_vox = size_out * size_out * size_out;
    flops += 2.0 * static_cast<double>(transpose ? size_in * size_in * size_in : out_vox) *
             static_cast<double>(cin * cout * k * k * k);
    if (ok && norm) {
      Node gn;
      gn.name = "bench_norm";
      gn.op_type = "GroupNorm";
      gn.domain = kItkitDomain;
      gn.inputs = {"y", "s", "b"};
      gn.outputs = {"z"};
      gn.attrs.SetInt("num_groups", cout);
      gn.attrs.SetFloat("epsilon", 1e-5f);
      gn.attrs.SetString("activation", "LeakyRelu");
      gn.attrs.SetFloat("alpha", 0.01f);
      ok = layer->norm.Init(gn, {y, RandomTensor({cout}, 1.0f, ++seed), RandomTensor({cout}, 0.1f, ++seed)},
                            {false, true, true}, x.Reshaped({1, cout, size_out, size_out, size_out}));
      if (!ok) error = layer->norm.error();
      layer->has_norm = true;
    }
    layers.push_back(std::move(layer));
  };
  int64_t size = patch, cin = 1;
  for (int i = 0; i < 6; ++i) {
    const int64_t stride = i == 0 ? 1 : 2;
    add(cin, ch[i], size, stride, 3, false, true);
    size /= stride;
    add(ch[i], ch[i], size, 1, 3, false, true);
    cin = ch[i];
  }
  for (int i = 5; i > 0; --i) {
    add(ch[i], ch[i - 1], size, 2, 2, true, false);
    size *= 2;
    add(2 * ch[i - 1], ch[i - 1], size, 1, 3, false, true);
    add(ch[i - 1], ch[i - 1], size, 1, 3, false, true);
  }
  add(ch[0], 3, size, 1, 1, false, false);
  if (!ok) {
    state.SkipWithError(error.c_str());
    return;
  }
  // One shared workspace, as the session's planner would provide.
  size_t ws = 0;
  for (const auto& l : layers) ws = std::max(ws, l->conv.workspace_bytes());
  std::vector<uint8_t> workspace(ws + 64, 0);
  for (auto& l : layers) l->conv.SetWorkspace(workspace.data());
  auto run_all = [&]() {
    for (auto& l : layers) {
      if (!l->conv.Run()) return l->conv.error();
      if (l->has_norm && !l->norm.Run()) return l->norm.error();
    }
    return std::string();
  };
  std::string warm = run_all();
  if (!warm.empty()) {
    state.SkipWithError(warm.c_str());
    return;
  }
  for (auto _ : state) {
    std::string e = run_all();
    if (!e.empty()) {
      state.SkipWithError(e.c_str());
      return;
    }
  }
  SetGflops(state, flops);
  state.counters["GMAC"] = flops / 2e9;
}

[[maybe_unused]] const bool kRegistered = [] {
  for (const ConvShape& s : kShapes) {
    benchmark::RegisterBenchmark((std::string("Conv3d/") + s.name).c_str(), BM_Conv, s, cpu::ConvImpl::kAuto)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MeasureProcessCPUTime()
        ->MinTime(1.0);
    if (s.transpose)  // the oneDNN deconvolution the GEMM path replaced, for comparison
      benchmark::RegisterBenchmark((std::string("Conv3d/") + s.name + "_onednn").c_str(), BM_Conv, s,
                                   cpu::ConvImpl::kOnednn)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->MinTime(1.0);
  }
  benchmark::RegisterBenchmark("UNet/conv+norm_sequence", BM_UNetConvNormSequence)
      ->Arg(128)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
        ->MeasureProcessCPUTime()
      ->Iterations(2);
  return true;
}();

}  // namespace
}  // namespace itkit::bench
