// Evaluates, once at load, every node whose inputs are all initializers (weight
// transforms, constant subgraphs torch leaves behind). Shape-dependent chains are
// folded later, per input shape, by the planner.
#include "cpu/cpu_backend.h"
#include "itkit/op_table.h"
#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {
namespace {

// Folding must not blow a small graph up into a huge one (ConstantOfShape, Expand).
constexpr int64_t kMaxFoldedElements = int64_t{16} << 20;

}  // namespace

Status FoldConstants(Graph& graph, bool& changed) {
  auto backend = CreateCpuBackend();
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    std::vector<ValueDesc> descs(node.inputs.size());
    std::vector<const ValueDesc*> ptrs(node.inputs.size(), nullptr);
    bool all_constant = true;
    for (size_t k = 0; k < node.inputs.size() && all_constant; ++k) {
      if (node.inputs[k].empty()) continue;
      const Tensor* t = Constant(graph, node.inputs[k]);
      if (!t) {
        all_constant = false;
        break;
      }
      descs[k] = ValueDesc{t->dtype(), t->shape(), t};
      ptrs[k] = &descs[k];
    }
    if (!all_constant || !FindOpSchema(node.domain, node.op_type)) continue;
    ShapeContext sctx(node, ptrs, graph.onnx_opset());
    if (!InferNodeShapes(sctx).ok()) continue;  // the planner will report it with context
    int64_t elements = 0;
    for (const ValueDesc& d : sctx.outputs()) elements += ElementCount(d.shape);
    if (elements > kMaxFoldedElements) continue;

    NodeSignature sig{&node, descs, sctx.outputs(), graph.onnx_opset()};
    auto kernel = backend->CreateKernel(sig);
    if (!kernel.ok()) continue;
    std::vector<Tensor> outputs;
    KernelContext ctx;
    bool ok = true;
    for (const ValueDesc& d : sig.outputs) {
      auto t = Tensor::Allocate(d.dtype, d.shape);
      if (!t.ok()) return t.status().WithContext(node.Describe());
      outputs.push_back(std::move(t).value());
    }
    for (const ValueDesc& d : descs) ctx.inputs.push_back(d.constant);
    for (Tensor& t : outputs) ctx.outputs.push_back(&t);
    std::vector<uint8_t> workspace((*kernel)->workspace_bytes());
    ctx.workspace = workspace.data();
    ctx.workspace_bytes = workspace.size();
    ok = (*kernel)->Run(ctx).ok();
    if (!ok) continue;
    for (size_t o = 0; o < node.outputs.size(); ++o)
      if (!node.outputs[o].empty()) graph.initializers[node.outputs[o]] = std::move(outputs[o]);
    dead[i] = true;
    changed = true;
  }
  if (changed) {
    RemoveNodes(graph, dead);
    RemoveUnusedInitializers(graph);
  }
  return Status::Ok();
}

}  // namespace itkit::passes
