// InstanceNorm (= itkit.GroupNorm with one channel per group) + fused LeakyReLU at
// the benchmark U-Net's activation shapes. The kernel reads X twice and writes Y
// once, so it is memory-bound: the GB/s counter is the figure to watch.
#include <string>

#include "bench_util.h"
#include "cpu/norm_kernels.h"

namespace itkit::bench {
namespace {

struct NormShape {
  const char* name;
  int64_t channels, size, groups;
};

const NormShape kShapes[] = {
    {"inst_32x128", 32, 128, 32}, {"inst_64x64", 64, 64, 64},   {"inst_320x4", 320, 4, 320},
    {"group8_32x128", 32, 128, 8}, {"group1_32x128", 32, 128, 1},
};

void BM_GroupNormLeakyRelu(benchmark::State& state, NormShape s, bool reference) {
  Node node;
  node.name = "bench_norm";
  node.op_type = "GroupNorm";
  node.domain = kItkitDomain;
  node.inputs = {"x", "s", "b"};
  node.outputs = {"y"};
  node.attrs.SetInt("num_groups", s.groups);
  node.attrs.SetFloat("epsilon", 1e-5f);
  node.attrs.SetString("activation", "LeakyRelu");
  node.attrs.SetFloat("alpha", 0.01f);
  const int64_t n = s.size;
  std::vector<Tensor> in = {RandomTensor({1, s.channels, n, n, n}, 1.0f, 1), RandomTensor({s.channels}, 1.0f, 2),
                            RandomTensor({s.channels}, 0.1f, 3)};
  const int64_t elems = s.channels * n * n * n;
  if (reference) {
    Tensor y = Tensor::Allocate(DType::kF32, in[0].shape()).value();
    cpu::GroupNormShape gs{1, s.channels, n * n * n, s.groups};
    cpu::Activation act{cpu::ActKind::kLeakyRelu, 0.01f};
    for (auto _ : state)
      cpu::GroupNormReference(gs, in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), 1e-5f, act,
                              y.data<float>());
  } else {
    NodeRunner r;
    if (!r.Init(node, in, {false, true, true}) || !r.Run()) {
      state.SkipWithError(r.error().c_str());
      return;
    }
    for (auto _ : state) r.Run();
  }
  // Two reads of X (statistics, normalisation) and one write of Y.
  state.counters["GB/s"] =
      benchmark::Counter(3.0 * 4.0 * static_cast<double>(elems) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["Gelem/s"] =
      benchmark::Counter(static_cast<double>(elems) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

[[maybe_unused]] const bool kRegistered = [] {
  for (const NormShape& s : kShapes) {
    benchmark::RegisterBenchmark((std::string("GroupNormLeakyRelu/") + s.name).c_str(), BM_GroupNormLeakyRelu, s,
                                 false)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
  }
  benchmark::RegisterBenchmark("GroupNormLeakyRelu/reference_inst_32x128", BM_GroupNormLeakyRelu, kShapes[0], true)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
        ->MeasureProcessCPUTime();
  return true;
}();

}  // namespace
}  // namespace itkit::bench
