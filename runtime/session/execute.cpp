// Runs a Plan: binds arena views, graph inputs and fresh output tensors to values,
// then runs each step's kernel (or device copy) in order.
#include "itkit/log.h"
#include "session/plan.h"

namespace itkit {

Status ExecutePlan(Plan& plan, const std::vector<std::shared_ptr<Backend>>& backends, ThreadPool* pool,
                   const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs) {
  std::vector<Tensor> bound(plan.values.size());
  for (size_t id = 0; id < plan.values.size(); ++id) {
    const PlanValue& v = plan.values[id];
    switch (v.kind) {
      case PlanValue::Kind::kConstant:
        bound[id] = *v.constant;
        break;
      case PlanValue::Kind::kGraphInput:
        bound[id] = *inputs[static_cast<size_t>(v.graph_input_index)];
        break;
      case PlanValue::Kind::kGraphOutput: {
        ITKIT_ASSIGN_OR_RETURN(bound[id], Tensor::Allocate(v.dtype, v.shape));
        break;
      }
      case PlanValue::Kind::kIntermediate: {
        if (v.first_step < 0) break;  // never produced (cannot happen for planned values)
        auto* base = static_cast<uint8_t*>(plan.arenas[v.backend].data);
        bound[id] = Tensor::View(v.dtype, v.shape, base + v.arena_offset, backends[v.backend]->device());
        break;
      }
    }
  }
  for (PlanStep& step : plan.steps) {
    if (!step.node) {  // device copy
      const Tensor& from = bound[static_cast<size_t>(step.inputs[0])];
      Tensor& to = bound[static_cast<size_t>(step.outputs[0])];
      Backend& src = *backends[step.copy_from_backend];
      Backend& dst = *backends[step.backend];
      Status s = src.device() != DeviceKind::kCpu ? src.CopyToHost(from, to) : dst.CopyFromHost(from, to);
      ITKIT_RETURN_IF_ERROR(s.WithContext("copying '" + plan.values[static_cast<size_t>(step.inputs[0])].name + "' to " +
                                          std::string(dst.name())));
      continue;
    }
    KernelContext ctx;
    ctx.inputs.reserve(step.inputs.size());
    for (int id : step.inputs) ctx.inputs.push_back(id < 0 ? nullptr : &bound[static_cast<size_t>(id)]);
    for (int id : step.outputs) ctx.outputs.push_back(&bound[static_cast<size_t>(id)]);
    ctx.pool = pool;
    if (step.workspace_bytes) {
      ctx.workspace = static_cast<uint8_t*>(plan.arenas[step.backend].data) + step.workspace_offset;
      ctx.workspace_bytes = step.workspace_bytes;
    }
    Status s = step.kernel->Run(ctx);
    if (!s.ok()) {
      if (s.message().rfind(step.node->Describe(), 0) != 0) s = s.WithContext(step.node->Describe());
      return s;
    }
  }
  for (const auto& backend : backends) ITKIT_RETURN_IF_ERROR(backend->Synchronize());

  outputs.clear();
  std::vector<bool> handed_out(plan.values.size(), false);
  for (int id : plan.output_ids) {
    const PlanValue& v = plan.values[static_cast<size_t>(id)];
    Tensor& t = bound[static_cast<size_t>(id)];
    if (v.kind == PlanValue::Kind::kGraphOutput && !handed_out[static_cast<size_t>(id)]) {
      outputs.push_back(t);
      handed_out[static_cast<size_t>(id)] = true;
    } else {  // a constant, a graph input, or the same value listed twice: give a copy
      ITKIT_ASSIGN_OR_RETURN(Tensor copy, t.Clone());
      outputs.push_back(std::move(copy));
    }
  }
  return Status::Ok();
}

}  // namespace itkit
