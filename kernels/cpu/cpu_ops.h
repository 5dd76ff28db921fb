// Per-family lists of CPU kernels. cpu_backend.cpp calls each Append* explicitly; a
// family's kernels live in the .cpp file of the same name (e.g. conv.cpp). Every
// optimised kernel keeps a plain reference implementation beside it
// (`<family>_reference.cpp`) that tests compare against.
#pragma once

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "itkit/backend.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

using KernelFactory = Result<std::unique_ptr<OpKernel>> (*)(const NodeSignature& sig);

struct CpuOpEntry {
  std::string_view domain;  // "" (ONNX) or "itkit"
  std::string_view op_type;
  KernelFactory create;
};

void AppendElementwiseKernels(std::vector<CpuOpEntry>& table);  // elementwise.cpp
void AppendTensorKernels(std::vector<CpuOpEntry>& table);       // tensor_ops.cpp
void AppendReduceKernels(std::vector<CpuOpEntry>& table);       // reduce.cpp
void AppendConvKernels(std::vector<CpuOpEntry>& table);         // conv.cpp
void AppendPoolKernels(std::vector<CpuOpEntry>& table);         // pool.cpp
void AppendNormKernels(std::vector<CpuOpEntry>& table);         // norm.cpp
void AppendResizeKernels(std::vector<CpuOpEntry>& table);       // resize.cpp
void AppendMatMulKernels(std::vector<CpuOpEntry>& table);       // matmul.cpp
void AppendEinsumKernels(std::vector<CpuOpEntry>& table);       // einsum.cpp
void AppendFusedElementwiseKernels(std::vector<CpuOpEntry>& table);  // fused_elementwise.cpp

const std::vector<CpuOpEntry>& CpuOpTable();

// A kernel from a callable `Status(KernelContext&)`; for ops without prepacking.
template <typename Fn>
class LambdaKernel final : public OpKernel {
 public:
  explicit LambdaKernel(Fn fn) : fn_(std::move(fn)) {}
  Status Run(KernelContext& ctx) override { return fn_(ctx); }

 private:
  Fn fn_;
};
template <typename Fn>
std::unique_ptr<OpKernel> MakeKernel(Fn fn) {
  return std::make_unique<LambdaKernel<Fn>>(std::move(fn));
}

}  // namespace itkit::cpu
