// Shared by the tensor-op kernel files (tensor_ops.cpp: layout ops; tensor_ops_more.cpp:
// Pad, Gather and the shape/constant generators).
#pragma once

#include <string>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/nd_iter.h"

namespace itkit::cpu {

// Elements per parallel range of a copy.
inline constexpr int64_t kCopyGrain = 1 << 15;

// Reads a shape-valued input at run time (host memory on the CPU).
inline std::vector<int64_t> InputInts(const KernelContext& ctx, size_t i) {
  if (i >= ctx.inputs.size() || !ctx.inputs[i]) return {};
  return ctx.inputs[i]->ToInt64Vector();
}

// The error for a run whose shapes differ from what was planned (a session bug or a
// shape input whose value changed after planning).
inline Status PlanMismatch(const std::string& node, const Shape& planned, const Shape& actual) {
  return Internal(node, ": planned output shape ", ShapeToString(planned), " but the inputs give ",
                  ShapeToString(actual));
}

void AppendTensorMoreKernels(std::vector<CpuOpEntry>& table);  // tensor_ops_more.cpp

}  // namespace itkit::cpu
