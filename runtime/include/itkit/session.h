// A Session runs one model: passes once at creation, then per distinct input shape
// a plan (shapes inferred, constants propagated, nodes placed on backends, kernels
// compiled, memory planned) that every later run with that shape reuses.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/graph.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit {

struct SessionOptions {
  int threads = 0;                      // CPU threads; 0 = all cores
  std::vector<std::string> disabled_passes;  // names from AllPassNames()
  // Backends tried in order before the CPU fallback (which is always present).
  std::vector<std::shared_ptr<Backend>> backends;
  size_t max_cached_plans = 8;          // distinct input shapes kept planned
  // Record runs of kernel steps on backends that can (CUDA Graphs) on the second run
  // of a plan and replay them afterwards; see Backend::CanRecord.
  bool record_steps = true;
  // Synchronise after every step and time it, by op type (Session::StepProfile): slow,
  // for finding where the time goes. Steps are not recorded while profiling.
  bool profile_steps = false;
};

struct StepTime {
  size_t count = 0;
  double seconds = 0.0;
};

struct RunOptions {
  // Graph outputs that a device backend produced stay in its memory (their
  // Tensor::device() is not kCpu) instead of being copied to the host. They are
  // valid until the next Run of this session, which overwrites them; outputs made on
  // the CPU are returned as usual.
  bool outputs_on_device = false;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

struct PlanStats {
  size_t arena_bytes = 0;        // planned activation memory, summed over the backends
  std::map<std::string, size_t> arena_bytes_per_backend;  // the same per backend name
  size_t value_arena_bytes = 0;  // the arena without step workspaces (values alone)
  size_t peak_live_bytes = 0;    // most value bytes alive at one step (<= value_arena_bytes)
  std::string peak_step;         // that step ("step N node '...' (Op)"), on the backend it peaks on
  size_t naive_bytes = 0;        // what one buffer per value would have taken
  size_t constant_bytes = 0;     // weights and folded constants
  size_t num_steps = 0;
  size_t f16_values = 0;         // f32 values stored as f16 (Backend::prefers_half_storage)
  size_t storage_casts = 0;      // Casts the planner inserted at f16/f32 boundaries
  size_t channels_last_values = 0;  // values stored channels-last (Backend::prefers_channels_last)
  size_t layout_transposes = 0;  // Transposes the planner inserted where layouts meet
  size_t in_place_values = 0;    // outputs written over a dying input's memory (OpKernel::in_place_input)
  std::map<std::string, size_t> steps_per_backend;
};

class Plan;

class Session {
 public:
  static Result<std::unique_ptr<Session>> Create(Model model, SessionOptions options = {});
  ~Session();

  // Inputs by graph input name (all non-initializer inputs required): host tensors,
  // or tensors in the memory of one of the session's device backends (copied into the
  // plan's own device memory first, in order with the run).
  // Returns the graph outputs in declaration order, on the host.
  Result<std::vector<Tensor>> Run(const std::vector<NamedTensor>& inputs);
  // Same, inputs in declaration order.
  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs);
  Result<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs, const RunOptions& run_options);

  const Model& model() const { return model_; }
  const std::vector<ValueInfo>& inputs() const { return model_.graph.inputs; }
  const std::vector<ValueInfo>& outputs() const { return model_.graph.outputs; }
  // Stats of the plan for these input shapes (planning it if needed).
  Result<PlanStats> StatsFor(const std::vector<Shape>& input_shapes);
  const std::vector<std::string>& applied_passes() const { return applied_passes_; }
  // With SessionOptions::profile_steps: time per op type over all runs so far
  // ("Conv", "itkit.GroupNorm", "copy", planner-inserted "Transpose (layout)", ...),
  // or per step ("Conv 'encoder.0.conv'", keyed by op type and node name).
  enum class ProfileBy { kOpType, kStep };
  std::map<std::string, StepTime> StepProfile(ProfileBy by = ProfileBy::kOpType) const;
  // Forgets the times so far (say, the planning and warm-up runs'), so that StepProfile
  // then covers only the runs after it.
  void ClearStepProfile();

 private:
  Session() = default;
  Result<Plan*> PlanFor(const std::vector<const Tensor*>& inputs, const RunOptions& run_options);

  Model model_;
  SessionOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::shared_ptr<Backend>> backends_;  // options' backends + CPU last
  std::vector<std::string> applied_passes_;
  std::vector<std::pair<std::vector<Shape>, std::unique_ptr<Plan>>> plans_;  // LRU front
};

}  // namespace itkit
