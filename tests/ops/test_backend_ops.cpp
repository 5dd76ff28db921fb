// itkit_backend_ops_test: every op of the CUDA backend against the CPU backend, in
// FP32, TF32 and FP16 modes (skipped, with the reason, where CUDA is unavailable),
// the CPU's optimised kernels against its reference loops, the on-disk algorithm cache
// and our kernels' races against cuDNN (the end-to-end checks of the CUDA backend are
// in test_cuda_backend.cpp). See backend_ops_harness.h; ITKIT_OPS_VERBOSE=1 prints
// every case, ITKIT_OPS_SEED / ITKIT_OPS_FILTER pick cases.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "backend_ops_harness.h"
#include "op_case_maker.h"
#include "cpu/conv_kernels.h"
#include "cpu/cpu_backend.h"
#include "cpu/matmul_kernels.h"
#include "cpu/norm_kernels.h"
#include "cpu/resize_kernels.h"
#include "itkit/devices.h"
#include "itkit/op_table.h"
#if ITKIT_HAVE_CUDA
#include "cuda/tuning_cache.h"
#include "itkit/cuda_backend.h"
#endif

namespace itkit::test::ops {
namespace {

const std::vector<OpCase>& Cases() { return CasesFromEnv(); }
Impl CpuImpl() { return CpuBackendImpl(); }

// The CPU's plain reference loops, for the families that also have optimised kernels.
Impl CpuReferenceImpl() {
  Impl i;
  i.name = "cpu-reference";
  i.backend = CreateCpuBackend();
  i.make = [](const NodeSignature& sig) -> Result<std::unique_ptr<OpKernel>> {
    const std::string& op = sig.node->op_type;
    if (op == "Conv" || op == "FusedConv") return cpu::CreateConvKernel(sig, false, cpu::ConvImpl::kReference);
    if (op == "ConvTranspose") return cpu::CreateConvKernel(sig, true, cpu::ConvImpl::kReference);
    if (op == "GroupNorm" || op == "InstanceNormalization" || op == "BatchNormalization" ||
        op == "LayerNormalization" || op == "LayerNormAct")
      return cpu::CreateNormKernel(sig, cpu::NormImpl::kReference);
    if (op == "Resize") return cpu::CreateResizeKernel(sig, cpu::ResizeImpl::kReference);
    if (op == "MatMul" || op == "Gemm") return cpu::CreateMatMulKernel(sig, cpu::MatMulImpl::kReference);
    return Unsupported("no separate CPU reference kernel for ", op);
  };
  return i;
}

uint32_t Seed() { return SeedFromEnv(); }

TEST(BackendOps, CpuKernelsMatchCpuReference) {
  std::vector<OpCase> cases;
  for (const OpCase& c : Cases())
    if (c.family == "conv" || c.family == "norm" || c.family == "layernorm" || c.family == "resize" ||
        c.family == "matmul")
      cases.push_back(c);
  const Summary s = RunAll(CpuImpl(), CpuReferenceImpl(), cases);
  EXPECT_EQ(s.failed, 0) << "seed " << Seed() << "; first failure: " << (s.failures.empty() ? "" : s.failures[0]);
}

// Every case is well formed and the CPU (the reference of the CUDA tests) runs it:
// otherwise the GPU comparisons would skip it silently.
TEST(BackendOps, CpuRunsEveryCase) {
  Impl cpu = CpuImpl();
  cpu.name = "cpu-self";
  const Summary s = RunAll(cpu, CpuImpl(), Cases());
  EXPECT_EQ(s.failed, 0) << "first failure: " << (s.failures.empty() ? "" : s.failures[0]);
  EXPECT_GT(s.passed, static_cast<int>(Cases().size() * 3 / 4));
}

// Every case with a channels-last form, in that form, on the CPU's channels-last
// emulation: checks the harness's conversions and the layout policy's forms (a form
// that tagged an input whose meaning depends on the layout would fail here).
TEST(BackendOps, ChannelsLastFormsOnTheCpuEmulation) {
  Impl cl;
  cl.name = "cpu-cl";
  cl.backend = CreateChannelsLastCpuBackend(true);  // runs the f16 cases through f32 kernels
  cl.channels_last = true;
  cl.require_support = true;
  const Summary s = RunAll(cl, CpuImpl(), Cases());
  EXPECT_EQ(s.failed, 0) << "first failure: " << (s.failures.empty() ? "" : s.failures[0]);
  EXPECT_GT(s.passed, 50);  // convolutions, norms, elementwise and concat cases
}

struct CudaConfig {
  const char* name;
  bool fp16, tf32;
  double matrix_tol;  // conv / matmul error bound in this precision
  bool channels_last = false;  // run each case's channels-last form (FP16 mode's layout)
  // Our kernels wherever they compete with cuDNN's (CudaBackendOptions::OwnKernels::kOwn):
  // the race at plan time never runs here (autotune is off), so without this config
  // they would only be checked against cuDNN, never against the CPU reference.
  bool own_kernels = false;
  // cuDNN's graph API for every forward convolution it takes (its heuristic's first
  // usable engine, CudnnGraph::kFirst); otherwise the race never runs here either.
  bool cudnn_graph_first = false;
};

class CudaOps : public ::testing::TestWithParam<CudaConfig> {};

TEST_P(CudaOps, MatchCpu) {
  const CudaConfig& cfg = GetParam();
  CudaBackendOptions o;
  o.fp16 = cfg.fp16;
  o.allow_tf32 = cfg.tf32;
  o.autotune = false;  // cuDNN's heuristic pick: the op test plans hundreds of shapes
  if (cfg.own_kernels) o.own_kernels = CudaBackendOptions::OwnKernels::kOwn;
  o.cudnn_graph = cfg.cudnn_graph_first ? CudaBackendOptions::CudnnGraph::kFirst : CudaBackendOptions::CudnnGraph::kOff;
  auto backend = CreateCudaBackend(o);
  if (!backend.ok()) {
    std::printf("%s: CUDA unavailable (%s): %zu cases skipped\n", cfg.name, backend.status().message().c_str(),
                Cases().size());
    GTEST_SKIP() << "CUDA unavailable: " << backend.status().message();
  }
  Impl impl;
  impl.name = cfg.name;
  impl.backend = *backend;
  impl.matrix_tol = cfg.matrix_tol;
  impl.require_support = true;
  impl.channels_last = cfg.channels_last;
#if ITKIT_HAVE_CUDA
  const int64_t graph_runs_before = cuda::CudnnGraphExecutions();
#endif
  const Summary s = RunAll(impl, CpuImpl(), Cases());
  EXPECT_EQ(s.failed, 0) << "seed " << Seed() << "; first failure: " << (s.failures.empty() ? "" : s.failures[0]);
  EXPECT_GT(s.passed, 0);
#if ITKIT_HAVE_CUDA
  // The graph configurations fall back to the convolution API wherever cuDNN's graph
  // API declines; they must not pass without the graph path having run at all.
  if (cfg.cudnn_graph_first) {
    EXPECT_GT(cuda::CudnnGraphExecutions() - graph_runs_before, 0) << "no convolution ran through cuDNN's graph API";
  }
#endif
  // Declined channels-last forms are skips, so a backend declining them all must not
  // pass: on an H100 (f3cbce9) 118 of the 128 cases with a form ran (the 10 others
  // have runtime weights, which the NDHWC path cannot prepack).
  if (cfg.channels_last) {
    EXPECT_GE(s.passed, 100);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaOps,
                         ::testing::Values(CudaConfig{"cuda-fp32", false, false, 2e-4},
                                           CudaConfig{"cuda-tf32", false, true, 5e-3},
                                           CudaConfig{"cuda-fp16", true, false, 1e-2},
                                           CudaConfig{"cuda-fp16-cl", true, false, 1e-2, true},
                                           CudaConfig{"cuda-fp16-cl-own", true, false, 1e-2, true, true},
                                           CudaConfig{"cuda-fp32-graph", false, false, 2e-4, false, false, true},
                                           CudaConfig{"cuda-fp16-cl-graph", true, false, 1e-2, true, false, true}),
                         [](const ::testing::TestParamInfo<CudaConfig>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(CudaBackend, UnavailableIsAStatusNotACrash) {
  const DeviceReport report = QueryDevices();
#if ITKIT_HAVE_CUDA
  EXPECT_TRUE(report.cuda_built);
#else
  EXPECT_FALSE(report.cuda_built);
#endif
  auto backend = CreateCudaBackend(CudaBackendOptions{});
  if (backend.ok()) {
    EXPECT_TRUE(report.cuda_available);
    EXPECT_EQ((*backend)->device(), DeviceKind::kCuda);
    EXPECT_EQ((*backend)->name(), "cuda");
  } else {
    std::printf("CUDA unavailable: %s\n", backend.status().message().c_str());
    EXPECT_EQ(backend.status().code(), StatusCode::kUnavailable);
    EXPECT_FALSE(backend.status().message().empty());
    EXPECT_FALSE(report.cuda_available);
    EXPECT_FALSE(report.cuda_unavailable_reason.empty());
  }
  CudaBackendOptions bad;
  bad.device = 1000;
  EXPECT_FALSE(CreateCudaBackend(bad).ok());
}

#if ITKIT_HAVE_CUDA
// ---- the on-disk algorithm cache survives a restart ----------------------------------------

int64_t CountLines(const std::string& path) {
  std::ifstream in(path);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

// X (and Y) channels-last when asked, W a plan-time constant.
Result<std::unique_ptr<OpKernel>> CreateConvKernelOn(Backend& backend, const Node& node, const Tensor& x,
                                                     const Tensor& w, bool channels_last = false) {
  ValueDesc dx{x.dtype(), x.shape(), nullptr, channels_last}, dw{w.dtype(), w.shape(), &w};
  ShapeContext sctx(node, {&dx, &dw}, 17);
  ITKIT_RETURN_IF_ERROR(InferNodeShapes(sctx));
  NodeSignature sig;
  sig.node = &node;
  sig.inputs = {dx, dw};
  sig.outputs = sctx.outputs();
  sig.outputs[0].channels_last = channels_last;
  sig.opset = 17;
  return backend.CreateKernel(sig);
}

// A fresh directory name for an on-disk tuning cache.
std::string TempCacheDir(const std::string& prefix) {
  return (std::filesystem::temp_directory_path() / (prefix + std::to_string(std::random_device{}()))).string();
}

// A fresh CUDA backend on the on-disk tuning cache `dir` (as after a restart) with the
// convolution's kernel created on it: planning is where the cache is read and written.
// Unavailable where there is no GPU.
Result<std::unique_ptr<OpKernel>> ConvKernelAfterRestart(const std::string& dir, bool fp16, const Node& node,
                                                         const Tensor& x, const Tensor& w, bool channels_last) {
  CudaBackendOptions o;
  o.fp16 = fp16;
  o.tuning_cache_dir = dir;
  ITKIT_ASSIGN_OR_RETURN(std::shared_ptr<Backend> backend, CreateCudaBackend(o));
  return CreateConvKernelOn(*backend, node, x, w, channels_last);
}

// A convolution node y = op(x, w).
Node ConvNode(const std::string& op_type) {
  Node node;
  node.name = op_type;
  node.op_type = op_type;
  node.inputs = {"x", "w"};
  node.outputs = {"y"};
  return node;
}

// A restarted backend neither tunes nor races the same convolution again: the
// convolution API's algorithm and the verdict of the race of cuDNN's graph-API engines
// against it (one "|graph:A" line per precision) come from the on-disk cache. (Whether
// the graph engines compute the right thing is the op harness's cuda_*_graph
// configurations' job.)
TEST(CudaTuning, AlgorithmCacheIsReusedAfterRestart) {
  const std::string dir = TempCacheDir("itkit_tuning_");
  Node node = ConvNode("Conv");
  node.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  std::mt19937 rng(5);
  const Tensor x = RandomF32({1, 16, 24, 24, 24}, rng), w = RandomF32({16, 16, 3, 3, 3}, rng, 0.1f);
  auto graph_lines = [&]() {
    std::ifstream in(dir + "/cudnn_algos.tsv");
    int lines = 0;
    for (std::string line; std::getline(in, line);) lines += line.find("|graph:A") != std::string::npos;
    return lines;
  };
  int graph_verdicts = 0;
  for (bool fp16 : {false, true}) {
    int64_t lines_after_first = -1;
    ++graph_verdicts;
    for (int restart = 0; restart < 2; ++restart) {
      auto kernel = ConvKernelAfterRestart(dir, fp16, node, x, w, /*channels_last=*/false);
      if (kernel.status().code() == StatusCode::kUnavailable) GTEST_SKIP() << kernel.status().message();
      ASSERT_TRUE(kernel.ok()) << kernel.status().ToString();
      const int64_t lines = CountLines(dir + "/cudnn_algos.tsv");
      if (restart == 0) {
        EXPECT_GE(lines, 1);
        lines_after_first = lines;
      } else {
        EXPECT_EQ(lines, lines_after_first) << "a restarted backend tuned the same convolution again";
      }
      EXPECT_EQ(graph_lines(), graph_verdicts) << (fp16 ? "fp16" : "fp32")
                                               << (restart ? ": raced again after a restart"
                                                           : ": no graph-API verdict recorded");
    }
  }
  std::filesystem::remove_all(dir);
}

// Our kernels on f16 channels-last data: with autotune and own_kernels kAuto each is
// raced against cuDNN at plan time. The verdict is cached (a restarted backend does not
// race again) and must not be "ours disagrees with cuDNN" (verdict 2), which would mean
// a wrong kernel kept out only by the check.
void ExpectRaceAgreesAndIsCached(const Node& node, const Shape& x_shape, const Shape& w_shape,
                                 const std::string& verdict_tag) {
  const std::string dir = TempCacheDir("itkit_race_");
  std::mt19937 rng(9);
  auto half = [](const Tensor& f) {
    Tensor h = Tensor::Allocate(DType::kF16, f.shape()).value();
    for (int64_t i = 0; i < f.size(); ++i) h.data<uint16_t>()[i] = FloatToHalf(f.data<float>()[i]);
    return h;
  };
  const Tensor x = half(RandomF32(x_shape, rng)), w = half(RandomF32(w_shape, rng, 0.1f));
  for (int restart = 0; restart < 2; ++restart) {
    auto kernel = ConvKernelAfterRestart(dir, /*fp16=*/true, node, x, w, /*channels_last=*/true);
    if (kernel.status().code() == StatusCode::kUnavailable) GTEST_SKIP() << kernel.status().message();
    ASSERT_TRUE(kernel.ok()) << kernel.status().ToString();
    std::ifstream in(dir + "/cudnn_algos.tsv");
    int verdicts = 0;
    for (std::string line; std::getline(in, line);) {
      auto entry = cuda::TuningCache::ParseLine(line);
      if (!entry || entry->first.find(verdict_tag) == std::string::npos) continue;
      ++verdicts;
      EXPECT_TRUE(entry->second.algo == 0 || entry->second.algo == 1)
          << "our kernel disagreed with cuDNN (verdict " << entry->second.algo << ")";
    }
    EXPECT_EQ(verdicts, 1) << (restart ? "a restarted backend raced the same shape again" : "no race was recorded");
  }
  std::filesystem::remove_all(dir);
}

TEST(CudaOwnKernels, StridedTransposeRaceAgreesAndIsCached) {
  Node node = ConvNode("ConvTranspose");
  node.attrs.SetInts("kernel_shape", {2, 2, 2});
  node.attrs.SetInts("strides", {2, 2, 2});
  ExpectRaceAgreesAndIsCached(node, {2, 64, 24, 24, 24}, {64, 32, 2, 2, 2}, "|own:strided-transpose");
}

// 3x3x3, 32 -> 32 at a size where the tiles are cut short (40 rows, 100 columns).
TEST(CudaOwnKernels, Conv3RaceAgreesAndIsCached) {
  Node node = ConvNode("Conv");
  node.attrs.SetInts("kernel_shape", {3, 3, 3});
  node.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  ExpectRaceAgreesAndIsCached(node, {2, 32, 24, 40, 100}, {32, 32, 3, 3, 3}, "|own:conv3-c32");
}

// The stem, 1 -> 32, an odd width (the last item one voxel).
TEST(CudaOwnKernels, Conv3StemRaceAgreesAndIsCached) {
  Node node = ConvNode("Conv");
  node.attrs.SetInts("kernel_shape", {3, 3, 3});
  node.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  ExpectRaceAgreesAndIsCached(node, {2, 1, 24, 40, 101}, {32, 1, 3, 3, 3}, "|own:conv3-stem");
}
#endif  // ITKIT_HAVE_CUDA

}  // namespace
}  // namespace itkit::test::ops
