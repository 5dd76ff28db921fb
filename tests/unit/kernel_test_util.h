// Helpers for kernel tests that pick a specific implementation (reference vs
// optimised) instead of the CPU backend's choice, plus random data and comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "itkit/backend.h"
#include "itkit/op_table.h"
#include "itkit/thread_pool.h"

namespace itkit::test {

using KernelMaker = std::function<Result<std::unique_ptr<OpKernel>>(const NodeSignature&)>;

// Like RunNode, but the kernel comes from `make`, and only inputs with
// const_mask[i] == true are visible as constants to the kernel (weights prepacked
// at creation vs. passed at run time). Shape inference sees all of them.
inline Result<std::vector<Tensor>> RunNodeWith(const Node& node, const std::vector<Tensor>& inputs,
                                               const KernelMaker& make, std::vector<bool> const_mask = {},
                                               int64_t opset = 17, int threads = 2) {
  std::vector<ValueDesc> descs(inputs.size());
  std::vector<const ValueDesc*> desc_ptrs(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    descs[i] = ValueDesc{inputs[i].dtype(), inputs[i].shape(), &inputs[i]};
    desc_ptrs[i] = &descs[i];
  }
  ShapeContext sctx(node, desc_ptrs, opset);
  ITKIT_RETURN_IF_ERROR(InferNodeShapes(sctx));
  NodeSignature sig;
  sig.node = &node;
  sig.inputs = descs;
  for (size_t i = 0; i < sig.inputs.size(); ++i)
    if (i < const_mask.size() && !const_mask[i]) sig.inputs[i].constant = nullptr;
  sig.outputs = sctx.outputs();
  sig.opset = opset;
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> kernel, make(sig));
  std::vector<Tensor> outputs;
  for (const ValueDesc& d : sig.outputs) {
    ITKIT_ASSIGN_OR_RETURN(Tensor t, Tensor::Allocate(d.dtype, d.shape));
    outputs.push_back(std::move(t));
  }
  static ThreadPool pool2(2);
  ThreadPool* pool = threads == 2 ? &pool2 : nullptr;
  std::vector<uint8_t> workspace(kernel->workspace_bytes() + 64);
  KernelContext ctx;
  for (size_t i = 0; i < inputs.size(); ++i) ctx.inputs.push_back(inputs[i].defined() ? &inputs[i] : nullptr);
  for (Tensor& t : outputs) ctx.outputs.push_back(&t);
  ctx.pool = pool;
  ctx.workspace = workspace.data() + 1;  // deliberately misaligned: kernels must cope
  ctx.workspace_bytes = kernel->workspace_bytes();
  ITKIT_RETURN_IF_ERROR(kernel->Run(ctx));
  return outputs;
}

// Uniform values in [lo, hi), never all zero.
inline Tensor RandomTensor(Shape shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::Allocate(DType::kF32, std::move(shape)).value();
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

inline Tensor F32(std::vector<float> values, Shape shape) {
  return Tensor::FromVector(values, std::move(shape)).value();
}

// |a - b| <= atol + rtol * |b| elementwise, reporting the first few mismatches.
inline void ExpectClose(const Tensor& actual, const Tensor& expected, float atol = 1e-5f, float rtol = 1e-5f) {
  ASSERT_EQ(actual.shape(), expected.shape());
  ASSERT_EQ(actual.dtype(), DType::kF32);
  int bad = 0;
  for (int64_t i = 0; i < expected.size() && bad < 5; ++i) {
    const float a = actual.data<float>()[i], e = expected.data<float>()[i];
    const bool ok = std::isnan(e) ? std::isnan(a) : std::fabs(a - e) <= atol + rtol * std::fabs(e);
    if (!ok) {
      ADD_FAILURE() << "element " << i << ": got " << a << ", expected " << e;
      ++bad;
    }
  }
}

inline void ExpectValues(const Tensor& actual, const std::vector<float>& expected, float atol = 1e-5f) {
  ASSERT_EQ(actual.size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(actual.data<float>()[i], expected[i], atol) << "element " << i;
}

}  // namespace itkit::test
