// The backend-ops harness (after ggml's test-backend-ops): every op and fusion on
// random shapes and random data (never zeros) runs on an implementation under test
// and on a reference (the CPU backend, or the CPU's reference loops), through the
// Backend interface exactly as the session drives it: plan-time constants, device
// uploads, outputs and workspace poisoned with NaN before the run, NaN/Inf checks,
// and a normalised error bound per op and precision. An implementation that does
// not support a case says so and the case counts as skipped, not failed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/graph.h"

namespace itkit::test::ops {

struct OpCase {
  std::string name;     // printable: op, shapes, attributes
  std::string family;   // conv, norm, unary, binary, resize, pool, softmax, argmax, matmul, tensor
  Node node;
  std::vector<Tensor> inputs;  // host tensors; an undefined Tensor is an omitted optional input
  std::vector<bool> constant;  // which inputs the plan knows as constants (weights, shape inputs)
  int64_t opset = 17;
  double tol = 1e-5;           // bound on ||out - ref|| / ||ref|| in FP32 arithmetic
  bool matrix = false;         // runs on matrix units (conv, matmul): looser under TF32 / FP16
  double max_mismatch = 0.0;   // integer outputs: allowed fraction of differing elements
  bool core = true;            // an implementation with require_support must run it
  // Output 0 written over the input the kernel names (OpKernel::in_place_input), as the
  // planner places it when that input dies there (FusedConv's Y over Z); kernels
  // without an in-place input run the case as usual.
  bool output_over_input = false;
};

using KernelFactory = std::function<Result<std::unique_ptr<OpKernel>>(const NodeSignature&)>;

struct Impl {
  std::string name;
  std::shared_ptr<Backend> backend;  // memory, copies and (without `make`) kernels
  KernelFactory make;                // optional: a specific kernel variant
  double matrix_tol = 1e-4;          // error bound for `matrix` cases (FP32: accumulation order)
  double mismatch_tol = 0.0;         // integer outputs computed from lower-precision values
  bool require_support = false;      // declining a `core` case is a failure, not a skip
  // Op types this implementation leaves to another backend by design, exempt from
  // require_support (the CUDA emulator's: those that run on cuDNN or cuBLAS).
  std::vector<std::string> delegated_ops;
  // Run each case in its channels-last form (itkit/channels_last.h): the tagged inputs
  // are uploaded as [N, ..., C], the tagged outputs read back from it. Cases without
  // such a form, or whose form the backend declines, are skipped (require_support
  // applies to the row-major runs).
  bool channels_last = false;
};

enum class Outcome { kPass, kFail, kSkip };

struct CaseResult {
  Outcome outcome = Outcome::kPass;
  std::string detail;  // why it failed / was skipped
  double error = 0.0;
};

// Runs `c` on `impl` and `ref` and compares. Cases with f16 inputs are checked against
// the reference run on the same case in f32.
CaseResult RunCase(const Impl& impl, const Impl& ref, const OpCase& c);

struct Summary {
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failures;
};

// Every case; prints one line per failure (and per case with ITKIT_OPS_VERBOSE=1),
// then "<impl>: N passed, N failed, N skipped".
Summary RunAll(const Impl& impl, const Impl& ref, const std::vector<OpCase>& cases);

// The random cases (op_cases.cpp). Seed from ITKIT_OPS_SEED (default 20261126);
// ITKIT_OPS_FILTER=substring keeps matching case names only.
std::vector<OpCase> MakeCases(uint32_t seed);
uint32_t SeedFromEnv();
std::vector<OpCase> FilterFromEnv(std::vector<OpCase> cases);
// This run's cases: MakeCases(SeedFromEnv()) through FilterFromEnv, made once.
const std::vector<OpCase>& CasesFromEnv();
// The CPU backend, the reference every other implementation is compared with.
Impl CpuBackendImpl();

}  // namespace itkit::test::ops
