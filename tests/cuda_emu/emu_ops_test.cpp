// The backend-ops harness (tests/ops) on the CUDA backend running on the host
// emulator: every case of every op family, on the same backend code, planner and
// kernels as on a GPU, against the CPU backend. What the emulator cannot run
// (convolutions and matrix products: cuDNN and cuBLAS) goes to the CPU as on a GPU
// that declined them; every other decline fails, as in CudaOps.MatchCpu.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend_ops_harness.h"
#include "itkit/devices.h"

namespace itkit::test::ops {
namespace {

const std::vector<OpCase>& Cases() { return CasesFromEnv(); }
Impl CpuImpl() { return CpuBackendImpl(); }

struct EmuConfig {
  const char* name;
  bool fp16;
  bool channels_last;
  int min_passed;  // a backend that declined nearly everything must not pass
  // The emulated GPU's multiprocessors (ITKIT_CUDA_EMU_SMS): grid sizes, and the walks
  // chosen by them (rows per block or split over blocks), follow this count.
  const char* sms = "132";
};

class CudaEmuOps : public ::testing::TestWithParam<EmuConfig> {};

TEST_P(CudaEmuOps, MatchCpu) {
  const EmuConfig& cfg = GetParam();
  CudaBackendOptions o;
  o.fp16 = cfg.fp16;
  o.autotune = false;
  setenv("ITKIT_CUDA_EMU_SMS", cfg.sms, 1);  // read when the backend starts
  auto backend = CreateCudaBackend(o);
  unsetenv("ITKIT_CUDA_EMU_SMS");
  ASSERT_TRUE(backend.ok()) << "the emulated CUDA backend must start: " << backend.status().message();
  Impl impl;
  impl.name = cfg.name;
  impl.backend = *backend;
  impl.matrix_tol = 1e-2;
  impl.require_support = true;
  impl.channels_last = cfg.channels_last;
  impl.delegated_ops = {"Conv", "ConvTranspose", "FusedConv", "MatMul", "Gemm"};
  const Summary s = RunAll(impl, CpuImpl(), Cases());
  EXPECT_EQ(s.failed, 0) << "seed " << SeedFromEnv() << "; first failure: "
                         << (s.failures.empty() ? "" : s.failures[0]);
  if (!std::getenv("ITKIT_OPS_FILTER")) {
    EXPECT_GE(s.passed, cfg.min_passed);
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaEmuOps,
                         ::testing::Values(EmuConfig{"emu-fp32", false, false, 200},
                                           EmuConfig{"emu-fp16", true, false, 200},
                                           EmuConfig{"emu-fp16-cl", true, true, 30},
                                           EmuConfig{"emu-fp32-2sms", false, false, 200, "2"}),
                         [](const ::testing::TestParamInfo<EmuConfig>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace itkit::test::ops
