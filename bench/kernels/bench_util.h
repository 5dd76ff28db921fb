// A single-node harness for kernel benchmarks: builds the signature (constant
// weights, as in a planned session), creates the CPU kernel, owns inputs, outputs
// and workspace, and runs it on a thread pool of the machine's size.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "itkit/backend.h"
#include "itkit/op_table.h"
#include "itkit/thread_pool.h"

namespace itkit::bench {

inline ThreadPool& Pool() {
  static ThreadPool pool(0);
  return pool;
}

inline Tensor RandomTensor(const Shape& shape, float scale, uint32_t seed) {
  Tensor t = Tensor::Allocate(DType::kF32, shape).value();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.size(); ++i) p[i] = dist(rng);
  return t;
}

class NodeRunner {
 public:
  // inputs[i] with const_inputs[i] are visible to the kernel as constants. Inputs may
  // be views; `output` (optional) is a view the result goes to instead of a fresh
  // tensor. The workspace is the runner's own unless SetWorkspace points elsewhere.
  using Factory = std::function<Result<std::unique_ptr<OpKernel>>(const NodeSignature&)>;
  bool Init(Node node, std::vector<Tensor> inputs, std::vector<bool> const_inputs, Tensor output = Tensor(),
            const Factory& factory = nullptr) {
    node_ = std::move(node);
    inputs_ = std::move(inputs);
    std::vector<ValueDesc> descs(inputs_.size());
    std::vector<const ValueDesc*> ptrs(inputs_.size());
    for (size_t i = 0; i < inputs_.size(); ++i) {
      descs[i] = ValueDesc{inputs_[i].dtype(), inputs_[i].shape(), &inputs_[i]};
      ptrs[i] = &descs[i];
    }
    ShapeContext sctx(node_, ptrs, 17);
    if (!Check(InferNodeShapes(sctx))) return false;
    NodeSignature sig;
    sig.node = &node_;
    sig.inputs = descs;
    for (size_t i = 0; i < sig.inputs.size(); ++i)
      if (i >= const_inputs.size() || !const_inputs[i]) sig.inputs[i].constant = nullptr;
    sig.outputs = sctx.outputs();
    sig.opset = 17;
    auto kernel = factory ? factory(sig) : CreateCpuBackend()->CreateKernel(sig);
    if (!Check(kernel.status())) return false;
    kernel_ = std::move(kernel).value();
    if (output.defined()) {
      outputs_.push_back(output.Reshaped(sig.outputs[0].shape));
    } else {
      for (const ValueDesc& d : sig.outputs) outputs_.push_back(Tensor::Allocate(d.dtype, d.shape).value());
    }
    workspace_.assign(kernel_->workspace_bytes() + 64, 0);
    ctx_.inputs.clear();
    ctx_.outputs.clear();
    for (Tensor& t : inputs_) ctx_.inputs.push_back(&t);
    for (Tensor& t : outputs_) ctx_.outputs.push_back(&t);
    ctx_.pool = &Pool();
    ctx_.workspace = workspace_.data();
    ctx_.workspace_bytes = kernel_->workspace_bytes();
    return true;
  }

  bool Run() { return Check(kernel_->Run(ctx_)); }
  size_t workspace_bytes() const { return kernel_->workspace_bytes(); }
  void SetWorkspace(void* ws) {
    workspace_.clear();
    workspace_.shrink_to_fit();
    ctx_.workspace = ws;
  }
  const Tensor& output() const { return outputs_[0]; }
  const std::string& error() const { return error_; }

 private:
  bool Check(const Status& s) {
    if (!s.ok()) error_ = s.ToString();
    return s.ok();
  }

  Node node_;
  std::vector<Tensor> inputs_, outputs_;
  std::unique_ptr<OpKernel> kernel_;
  std::vector<uint8_t> workspace_;
  KernelContext ctx_;
  std::string error_;
};

// Reports `flops` per iteration as a GFLOP/s rate.
inline void SetGflops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace itkit::bench
