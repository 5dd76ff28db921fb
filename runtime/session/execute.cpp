// Runs a Plan: binds arena views, graph inputs and fresh output tensors to values,
// then runs each step's kernel (or device copy) in order. Runs of kernel steps on a
// backend that records (CUDA Graphs) run plainly once, are recorded on the second
// run and replayed from then on.
#include <chrono>

#include "itkit/log.h"
#include "session/plan.h"

namespace itkit {
namespace {

Status RunKernelStep(PlanStep& step, Plan& plan, std::vector<Tensor>& bound, ThreadPool* pool) {
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
  if (!s.ok() && s.message().rfind(step.node->Describe(), 0) != 0) s = s.WithContext(step.node->Describe());
  return s;
}

Status RunStepsPlainly(Plan& plan, size_t first, size_t end, std::vector<Tensor>& bound, ThreadPool* pool) {
  for (size_t i = first; i < end; ++i) ITKIT_RETURN_IF_ERROR(RunKernelStep(plan.steps[i], plan, bound, pool));
  return Status::Ok();
}

// Records the segment's steps; false (and the backend out of recording mode) when
// any step or the recording itself fails, e.g. a kernel that synchronises.
bool Record(Plan::Segment& seg, Plan& plan, Backend& backend, std::vector<Tensor>& bound, ThreadPool* pool) {
  Status s = backend.BeginRecording();
  if (!s.ok()) {
    LogDebug(backend.name(), ": not recording steps: ", s.message());
    return false;
  }
  Status steps = RunStepsPlainly(plan, seg.first_step, seg.end_step, bound, pool);
  auto recording = backend.EndRecording();  // always: ends the recording mode
  if (!steps.ok() || !recording.ok()) {
    // Once per plan: slower (one launch per kernel), not wrong.
    LogWarning(backend.name(), ": steps ", seg.first_step, "-", seg.end_step - 1,
               " could not be recorded, running them one by one: ", (steps.ok() ? recording.status() : steps).message());
    return false;
  }
  seg.recording = std::move(recording).value();
  return true;
}

Status RunSegment(Plan::Segment& seg, Plan& plan, Backend& backend, std::vector<Tensor>& bound, ThreadPool* pool,
                  bool record_steps) {
  if (seg.recording) return seg.recording->Replay();
  // The first run is plain: kernels may finish lazy set-up there (host work a
  // recording must not contain).
  if (record_steps && seg.recordable && seg.runs > 0) {
    if (Record(seg, plan, backend, bound, pool)) return seg.recording->Replay();
    seg.recordable = false;
  }
  ++seg.runs;
  return RunStepsPlainly(plan, seg.first_step, seg.end_step, bound, pool);
}

// The profile key of a step: its op type, marked when the planner inserted it.
std::string ProfileKey(const PlanStep& step, const Plan& plan) {
  if (!step.node) return step.copy_from_backend == step.backend ? "copy on device" : "copy between devices";
  const Node& node = *step.node;
  std::string key = node.domain.empty() ? node.op_type : node.domain + "." + node.op_type;
  for (const Node& inserted : plan.owned_nodes)
    if (&inserted == &node) return key + (node.op_type == "Cast" ? " (storage)" : " (layout)");
  return key;
}

std::string StepKey(const PlanStep& step, const std::string& op_key) {
  if (!step.node) return op_key;
  return op_key + " '" + step.node->name + "'";
}

}  // namespace

Status ExecutePlan(Plan& plan, const std::vector<std::shared_ptr<Backend>>& backends, ThreadPool* pool,
                   const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs, bool record_steps,
                   bool profile_steps) {
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
        if (v.downloaded_from < 0) {
          ITKIT_ASSIGN_OR_RETURN(bound[id], Tensor::Allocate(v.dtype, v.shape));
          break;
        }
        // A download: into page-locked memory (a direct DMA, no staging), reused while
        // the caller has dropped the previous run's tensor, so no fresh pages are
        // faulted in per run (20 vs 5 ms per 128^3 U-Net window on an H100).
        std::array<Tensor, 2>& slots = plan.downloaded_outputs[static_cast<int>(id)];
        Tensor* pooled = slots[0].sole_owner() ? &slots[0] : &slots[1];
        if (!pooled->sole_owner()) {
          // Both held by the caller, or not made yet: fill an empty slot, else let the
          // caller keep slot 0's memory and make a new one there.
          pooled = !slots[0].defined() ? &slots[0] : !slots[1].defined() ? &slots[1] : &slots[0];
          const size_t bytes = static_cast<size_t>(ElementCount(v.shape)) * DTypeSize(v.dtype);
          ITKIT_ASSIGN_OR_RETURN(DeviceBuffer host, backends[static_cast<size_t>(v.downloaded_from)]->AllocateHost(bytes));
          *pooled = Tensor::Wrap(v.dtype, v.shape, host.owner, host.data, DeviceKind::kCpu);
        }
        bound[id] = *pooled;
        break;
      }
      case PlanValue::Kind::kIntermediate: {
        if (v.first_step < 0) break;  // never produced (cannot happen for planned values)
        const DeviceBuffer& arena = plan.arenas[v.backend];
        // Owning the arena: a device output handed to the caller keeps it alive.
        bound[id] = Tensor::Wrap(v.dtype, v.shape, arena.owner, static_cast<uint8_t*>(arena.data) + v.arena_offset,
                                 backends[v.backend]->device());
        break;
      }
    }
  }
  size_t next_segment = 0;
  using Clock = std::chrono::steady_clock;
  if (profile_steps)
    for (const auto& backend : backends) ITKIT_RETURN_IF_ERROR(backend->Synchronize());
  Clock::time_point step_start = Clock::now();
  // Profiling: the time since step_start goes to `step`, by op type and by node.
  auto charge = [&](const PlanStep& step, Clock::time_point now) {
    const double seconds = std::chrono::duration<double>(now - step_start).count();
    const std::string key = ProfileKey(step, plan);
    for (StepTime* t : {&plan.profile[key], &plan.profile_by_step[StepKey(step, key)]}) {
      ++t->count;
      t->seconds += seconds;
    }
    step_start = now;
  };
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    PlanStep& step = plan.steps[i];
    if (profile_steps && i > 0) {  // the previous step, synchronised
      const PlanStep& prev = plan.steps[i - 1];
      ITKIT_RETURN_IF_ERROR(backends[prev.backend]->Synchronize());
      if (!prev.node && prev.copy_from_backend != prev.backend)
        ITKIT_RETURN_IF_ERROR(backends[prev.copy_from_backend]->Synchronize());
      charge(prev, Clock::now());
    }
    if (!profile_steps && next_segment < plan.segments.size() && plan.segments[next_segment].first_step == i) {
      Plan::Segment& seg = plan.segments[next_segment++];
      ITKIT_RETURN_IF_ERROR(RunSegment(seg, plan, *backends[seg.backend], bound, pool, record_steps));
      i = seg.end_step - 1;
      continue;
    }
    if (!step.node) {  // device copy
      const Tensor& from = bound[static_cast<size_t>(step.inputs[0])];
      Tensor& to = bound[static_cast<size_t>(step.outputs[0])];
      Backend& src = *backends[step.copy_from_backend];
      Backend& dst = *backends[step.backend];
      Status s = step.copy_from_backend == step.backend ? dst.CopyOnDevice(from, to)
                 : src.device() != DeviceKind::kCpu     ? src.CopyToHost(from, to)
                                                        : dst.CopyFromHost(from, to);
      ITKIT_RETURN_IF_ERROR(s.WithContext("copying '" + plan.values[static_cast<size_t>(step.inputs[0])].name + "' to " +
                                          std::string(dst.name())));
      continue;
    }
    ITKIT_RETURN_IF_ERROR(RunKernelStep(step, plan, bound, pool));
  }
  for (const auto& backend : backends) ITKIT_RETURN_IF_ERROR(backend->Synchronize());
  if (profile_steps && !plan.steps.empty()) charge(plan.steps.back(), Clock::now());

  outputs.clear();
  std::vector<bool> handed_out(plan.values.size(), false);
  for (int id : plan.output_ids) {
    const PlanValue& v = plan.values[static_cast<size_t>(id)];
    Tensor& t = bound[static_cast<size_t>(id)];
    if (v.kind == PlanValue::Kind::kIntermediate && backends[v.backend]->device() != DeviceKind::kCpu) {
      outputs.push_back(t);  // outputs_on_device: the arena's memory, valid until the next run
    } else if (v.kind == PlanValue::Kind::kGraphOutput && !handed_out[static_cast<size_t>(id)]) {
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
