// Runs one node on the CPU backend: shape inference from the given inputs (all
// treated as constants, so shape-valued inputs work), kernel creation and execution.
// For kernel unit tests against hand-derived values.
#pragma once

#include <memory>
#include <vector>

#include "cpu/cpu_backend.h"
#include "itkit/backend.h"
#include "itkit/op_table.h"
#include "itkit/thread_pool.h"

namespace itkit::test {

inline Result<std::vector<Tensor>> RunNode(const Node& node, const std::vector<Tensor>& inputs,
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
  sig.outputs = sctx.outputs();
  sig.opset = opset;
  auto backend = CreateCpuBackend();
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> kernel, backend->CreateKernel(sig));
  std::vector<Tensor> outputs;
  for (const ValueDesc& d : sig.outputs) {
    ITKIT_ASSIGN_OR_RETURN(Tensor t, Tensor::Allocate(d.dtype, d.shape));
    outputs.push_back(std::move(t));
  }
  static ThreadPool pool(threads);
  std::vector<uint8_t> workspace(kernel->workspace_bytes() + 64);
  KernelContext ctx;
  for (size_t i = 0; i < inputs.size(); ++i) ctx.inputs.push_back(inputs[i].defined() ? &inputs[i] : nullptr);
  for (Tensor& t : outputs) ctx.outputs.push_back(&t);
  ctx.pool = &pool;
  ctx.workspace = workspace.data();
  ctx.workspace_bytes = kernel->workspace_bytes();
  ITKIT_RETURN_IF_ERROR(kernel->Run(ctx));
  return outputs;
}

inline Node MakeNode(std::string op_type, std::vector<std::string> inputs,
                     std::vector<std::string> outputs, std::string domain = "") {
  Node n;
  n.name = op_type + "_test";
  n.op_type = std::move(op_type);
  n.domain = std::move(domain);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

}  // namespace itkit::test
