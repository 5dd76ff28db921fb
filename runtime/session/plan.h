// Internal: the execution plan for one set of input shapes. Built once by BuildPlan
// (shape inference, constant propagation, placement, kernel compilation, memory
// planning), then executed by Session::Run for every call with those shapes.
#pragma once

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/graph.h"
#include "itkit/session.h"
#include "itkit/thread_pool.h"

namespace itkit {

struct PlanValue {
  enum class Kind { kConstant, kGraphInput, kIntermediate, kGraphOutput };
  std::string name;
  Kind kind = Kind::kIntermediate;
  DType dtype = DType::kUndefined;
  Shape shape;
  size_t backend = 0;            // index into the session's backends: where it lives
  const Tensor* constant = nullptr;  // kConstant: host or device tensor owned elsewhere
  size_t arena_offset = 0;       // kIntermediate: offset in its backend's arena
  size_t bytes = 0;
  int first_step = -1, last_step = -1;  // lifetime in steps (intermediates)
  int graph_input_index = -1, graph_output_index = -1;
  bool half_of_f32 = false;      // f32 by shape inference, stored as f16 (dtype kF16)
  bool channels_last = false;    // `shape` [N, C, ...] stored as [N, ..., C] (channels_last.h)
  int downloaded_from = -1;      // kGraphOutput copied from this device backend's memory
};

struct PlanStep {
  const Node* node = nullptr;    // nullptr for a device copy; a Cast the planner added
                                 // points into Plan::owned_nodes
  size_t backend = 0;
  std::unique_ptr<OpKernel> kernel;
  std::vector<int> inputs;       // value ids, -1 for omitted optional inputs
  std::vector<int> outputs;      // value ids, -1 for unused optional outputs
  size_t workspace_offset = 0, workspace_bytes = 0;
  size_t copy_from_backend = 0;  // for copies
};

class Plan {
 public:
  std::vector<PlanValue> values;
  std::vector<PlanStep> steps;
  std::vector<int> input_ids;    // per graph input
  std::vector<int> output_ids;   // per graph output
  std::vector<DeviceBuffer> arenas;  // per backend (empty buffer when unused)
  std::vector<size_t> arena_bytes;
  std::deque<Tensor> owned_constants;  // folded at plan time or uploaded to devices
  std::vector<std::unique_ptr<Tensor>> scratch_outputs;  // unused optional outputs
  std::deque<Node> owned_nodes;  // Casts and Transposes inserted for f16 / channels-last storage
  PlanStats stats;
  // CUDA Graph-style recordings of runs of kernel steps (see Backend::CanRecord).
  struct Segment {
    size_t first_step = 0, end_step = 0;  // [first, end) kernel steps on one backend
    size_t backend = 0;
    int runs = 0;                          // plain runs so far (recorded after the first)
    bool recordable = true;                // false after a failed recording
    std::unique_ptr<StepRecording> recording;
  };
  std::vector<Segment> segments;
  // Host memory of graph outputs downloaded from a device, by value id: page-locked
  // (Backend::AllocateHost), reused by a later run once the caller has let go of it.
  // Two per output, so a caller holding the previous output allocates nothing either.
  std::map<int, std::array<Tensor, 2>> downloaded_outputs;
  std::map<std::string, StepTime> profile;          // SessionOptions::profile_steps, by op type
  std::map<std::string, StepTime> profile_by_step;  // and by op type + node name
};

struct PlanInputs {
  const Graph* graph;
  const std::vector<std::shared_ptr<Backend>>* backends;  // CPU last
  ThreadPool* pool;
  bool outputs_on_device = false;  // see RunOptions
};

// Ops whose f32 values may be stored as f16 on a backend that prefers it (precision.cpp).
bool StoresHalfSafely(const Node& node);
// Whether such a node may have f32-stored inputs cast to f16 (tensor-core ops); the
// others take the f16 form only when their inputs are f16 already.
bool ConvertsInputsToHalf(const Node& node);
// Whether input `input` of such a node is data (stored f16) rather than parameters.
bool StoresInputAsHalf(const Node& node, size_t input);

// Small integer graph inputs (shapes, axes, pads fed at run time) are treated as
// constants while planning, so their consumers fold; their values are part of the
// plan cache key.
inline constexpr int64_t kMaxShapeInputElements = 64;
bool IsShapeValuedInput(const Tensor& t);

Result<std::unique_ptr<Plan>> BuildPlan(const PlanInputs& in, const std::vector<const Tensor*>& inputs);
Status ExecutePlan(Plan& plan, const std::vector<std::shared_ptr<Backend>>& backends, ThreadPool* pool,
                   const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                   bool record_steps = true, bool profile_steps = false);

// Greedy best-fit offsets for buffers with lifetimes; returns the arena size.
struct BufferLifetime {
  size_t bytes;
  int first, last;
  size_t offset = 0;
};
size_t AssignArenaOffsets(std::vector<BufferLifetime>& buffers, size_t alignment = 64);
// Per value, the value whose arena buffer it uses: itself, or (OpKernel::in_place_input)
// the input its step writes it over when that input dies there; chains share one.
std::vector<int> ShareInPlaceBuffers(Plan& plan);

}  // namespace itkit
