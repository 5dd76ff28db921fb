// cuDNN's graph API for forward convolutions (cudnn_graph_conv.h): descriptors, the
// heuristic's engine configurations, plans, execution and the race against the
// convolution API's algorithm.
#include "cuda/cudnn_graph_conv.h"

#include <algorithm>
#include <atomic>
#include <optional>

#include "cuda/own_kernels.cuh"
#include "itkit/channels_last.h"
#include "itkit/log.h"

namespace itkit::cuda {
namespace {

constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3;
constexpr int64_t kAlignment = 16;  // bytes; Execute checks the pointers

std::atomic<int64_t> executions{0};

#define ITKIT_GRAPH_CHECK(call, what)                                              \
  do {                                                                             \
    const cudnnStatus_t itkit_graph_st_ = (call);                                  \
    if (itkit_graph_st_ != CUDNN_STATUS_SUCCESS)                                   \
      return ::itkit::cuda::CudnnError(itkit_graph_st_, what, __FILE__, __LINE__); \
  } while (0)

Status Set(const BackendDescriptor& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
           int64_t count, const void* values, const char* what) {
  ITKIT_GRAPH_CHECK(dnn().BackendSetAttribute(d.get(), name, type, count, values), what);
  return Status::Ok();
}

Status SetDescriptor(const BackendDescriptor& d, cudnnBackendAttributeName_t name, const BackendDescriptor& value,
                     const char* what) {
  cudnnBackendDescriptor_t v = value.get();
  return Set(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v, what);
}

Status Finalize(const BackendDescriptor& d, const char* what) {
  ITKIT_GRAPH_CHECK(dnn().BackendFinalize(d.get()), what);
  return Status::Ok();
}

Shape ShapeOf(int64_t n, int64_t c, const std::vector<int64_t>& spatial) {
  Shape dims = {n, c};
  dims.insert(dims.end(), spatial.begin(), spatial.end());
  return dims;
}

// A dense tensor of logical dims [A, B, spatial...], stored row-major or channels-last
// ([A][spatial...][B]: NDHWC data, and the filter layout [K][k...][C]).
Result<BackendDescriptor> MakeTensor(int64_t uid, cudnnDataType_t type, const Shape& dims, bool channels_last) {
  const std::vector<int64_t> strides = LogicalStrides(dims, channels_last);
  ITKIT_ASSIGN_OR_RETURN(BackendDescriptor d, BackendDescriptor::Create(CUDNN_BACKEND_TENSOR_DESCRIPTOR));
  const auto rank = static_cast<int64_t>(dims.size());
  ITKIT_RETURN_IF_ERROR(Set(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type"));
  ITKIT_RETURN_IF_ERROR(Set(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, rank, dims.data(), "tensor dims"));
  ITKIT_RETURN_IF_ERROR(Set(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, rank, strides.data(), "tensor strides"));
  ITKIT_RETURN_IF_ERROR(Set(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid"));
  ITKIT_RETURN_IF_ERROR(
      Set(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &kAlignment, "tensor byte alignment"));
  ITKIT_RETURN_IF_ERROR(Finalize(d, "tensor descriptor"));
  return Result<BackendDescriptor>(std::move(d));
}

// The engine behind a configuration: whether our numerics allow it, and its index.
Result<bool> EngineAllowed(const BackendDescriptor& config, const GraphConvSpec& spec, int64_t* global_index) {
  ITKIT_ASSIGN_OR_RETURN(BackendDescriptor engine, BackendDescriptor::Create(CUDNN_BACKEND_ENGINE_DESCRIPTOR));
  cudnnBackendDescriptor_t e = engine.get();
  int64_t count = 0;
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(config.get(), CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                              1, &count, &e),
                    "engine of a configuration");
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &count,
                                              global_index),
                    "engine index");
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t note_count = 0;
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                              CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &note_count, notes),
                    "engine numerical notes");
  const bool f32 = spec.data == CUDNN_DATA_FLOAT;
  for (int64_t i = 0; i < std::min<int64_t>(note_count, CUDNN_NUMERICAL_NOTE_TYPE_COUNT); ++i) {
    if (notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION) return false;
    if (f32 && notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS) return false;
    if (f32 && !spec.allow_tensor_cores && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE) return false;
  }
  cudnnBackendBehaviorNote_t behaviour[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  int64_t behaviour_count = 0;
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                                              CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &behaviour_count, behaviour),
                    "engine behaviour notes");
  for (int64_t i = 0; i < std::min<int64_t>(behaviour_count, CUDNN_BEHAVIOR_NOTE_TYPE_COUNT); ++i)
    if (behaviour[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION) return false;
  return true;
}

}  // namespace

BackendDescriptor::~BackendDescriptor() {
  if (d_) (void)dnn().BackendDestroyDescriptor(d_);  // nothing to report to from a destructor
}

BackendDescriptor& BackendDescriptor::operator=(BackendDescriptor&& o) noexcept {
  if (this != &o) {
    if (d_) (void)dnn().BackendDestroyDescriptor(d_);
    d_ = o.d_;
    o.d_ = nullptr;
  }
  return *this;
}

Result<BackendDescriptor> BackendDescriptor::Create(cudnnBackendDescriptorType_t type) {
  if (!dnn().has_graph_api()) return Unsupported("this cuDNN has no graph API");
  BackendDescriptor d;
  ITKIT_GRAPH_CHECK(dnn().BackendCreateDescriptor(type, &d.d_), "cudnnBackendCreateDescriptor");
  return Result<BackendDescriptor>(std::move(d));
}

Result<std::shared_ptr<GraphConvSearch>> GraphConvSearch::Create(cudnnHandle_t handle, const GraphConvSpec& spec) {
  const size_t nd = spec.in.size();
  if (nd < 1 || spec.out.size() != nd || spec.kernel.size() != nd || spec.pads.size() != nd ||
      spec.strides.size() != nd || spec.dilations.size() != nd)
    return InvalidArgument("graph convolution: inconsistent spatial ranks");
  std::shared_ptr<GraphConvSearch> s(new GraphConvSearch());
  s->handle_ = handle;
  ITKIT_ASSIGN_OR_RETURN(BackendDescriptor x,
                         MakeTensor(kUidX, spec.data, ShapeOf(spec.n, spec.cin, spec.in), spec.channels_last));
  ITKIT_ASSIGN_OR_RETURN(BackendDescriptor w,
                         MakeTensor(kUidW, spec.data, ShapeOf(spec.cout, spec.cin, spec.kernel), spec.channels_last));
  ITKIT_ASSIGN_OR_RETURN(BackendDescriptor y,
                         MakeTensor(kUidY, spec.data, ShapeOf(spec.n, spec.cout, spec.out), spec.channels_last));

  ITKIT_ASSIGN_OR_RETURN(s->conv_, BackendDescriptor::Create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR));
  const auto rank = static_cast<int64_t>(nd);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  ITKIT_RETURN_IF_ERROR(Set(s->conv_, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &rank, "conv dims"));
  ITKIT_RETURN_IF_ERROR(Set(s->conv_, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, "conv type"));
  ITKIT_RETURN_IF_ERROR(
      Set(s->conv_, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode, "conv mode"));
  ITKIT_RETURN_IF_ERROR(
      Set(s->conv_, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, rank, spec.pads.data(), "conv pads"));
  ITKIT_RETURN_IF_ERROR(
      Set(s->conv_, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, rank, spec.pads.data(), "conv pads"));
  ITKIT_RETURN_IF_ERROR(Set(s->conv_, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, rank, spec.dilations.data(),
                            "conv dilations"));
  ITKIT_RETURN_IF_ERROR(Set(s->conv_, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, rank,
                            spec.strides.data(), "conv strides"));
  ITKIT_RETURN_IF_ERROR(Finalize(s->conv_, "convolution descriptor"));

  // alpha and beta as floats (f32 compute); some versions want doubles: tried second.
  auto build_op = [&](bool as_double) -> Status {
    ITKIT_ASSIGN_OR_RETURN(s->op_, BackendDescriptor::Create(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR));
    ITKIT_RETURN_IF_ERROR(SetDescriptor(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, x, "fprop X"));
    ITKIT_RETURN_IF_ERROR(SetDescriptor(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, w, "fprop W"));
    ITKIT_RETURN_IF_ERROR(SetDescriptor(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, y, "fprop Y"));
    ITKIT_RETURN_IF_ERROR(
        SetDescriptor(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, s->conv_, "fprop conv"));
    const float alpha_f = 1.0f, beta_f = 0.0f;
    const double alpha_d = 1.0, beta_d = 0.0;
    const cudnnBackendAttributeType_t scalar = as_double ? CUDNN_TYPE_DOUBLE : CUDNN_TYPE_FLOAT;
    ITKIT_RETURN_IF_ERROR(Set(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, scalar, 1,
                              as_double ? static_cast<const void*>(&alpha_d) : &alpha_f, "fprop alpha"));
    ITKIT_RETURN_IF_ERROR(Set(s->op_, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, scalar, 1,
                              as_double ? static_cast<const void*>(&beta_d) : &beta_f, "fprop beta"));
    return Finalize(s->op_, "convolution forward operation");
  };
  if (!build_op(/*as_double=*/false).ok()) ITKIT_RETURN_IF_ERROR(build_op(/*as_double=*/true));

  ITKIT_ASSIGN_OR_RETURN(s->graph_, BackendDescriptor::Create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR));
  cudnnBackendDescriptor_t op = s->op_.get();
  ITKIT_RETURN_IF_ERROR(Set(s->graph_, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op, "graph ops"));
  // The handle attribute is deprecated in recent cuDNN 9 releases but still accepted;
  // a refusal is not fatal.
  (void)dnn().BackendSetAttribute(s->graph_.get(), static_cast<cudnnBackendAttributeName_t>(800) /* OPERATIONGRAPH_HANDLE */,
                                  CUDNN_TYPE_HANDLE, 1, &handle);
  ITKIT_RETURN_IF_ERROR(Finalize(s->graph_, "operation graph"));

  ITKIT_ASSIGN_OR_RETURN(s->heuristic_, BackendDescriptor::Create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR));
  const cudnnBackendHeurMode_t heur_mode = CUDNN_HEUR_MODE_A;
  ITKIT_RETURN_IF_ERROR(SetDescriptor(s->heuristic_, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, s->graph_, "heuristic graph"));
  ITKIT_RETURN_IF_ERROR(
      Set(s->heuristic_, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &heur_mode, "heuristic mode"));
  ITKIT_RETURN_IF_ERROR(Finalize(s->heuristic_, "engine heuristic"));
  int64_t count = 0;
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(s->heuristic_.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
                    "heuristic result count");
  count = std::clamp<int64_t>(count, 0, 64);
  std::vector<BackendDescriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    ITKIT_ASSIGN_OR_RETURN(BackendDescriptor c, BackendDescriptor::Create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(c.get());
    configs.push_back(std::move(c));
  }
  int64_t returned = 0;
  if (count > 0)
    ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(s->heuristic_.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()),
                      "heuristic results");
  for (int64_t i = 0; i < std::min(returned, count); ++i) {
    int64_t engine = -1;
    auto allowed = EngineAllowed(configs[static_cast<size_t>(i)], spec, &engine);
    if (!allowed.ok() || !*allowed) continue;
    s->configs_.push_back(std::move(configs[static_cast<size_t>(i)]));
    s->engines_.push_back(engine);
  }
  s->tensors_.push_back(std::move(x));
  s->tensors_.push_back(std::move(w));
  s->tensors_.push_back(std::move(y));
  return s;
}

Result<std::unique_ptr<GraphConvPlan>> GraphConvSearch::Plan(size_t i) const {
  if (i >= configs_.size()) return Unsupported("graph convolution: no candidate ", i);
  std::unique_ptr<GraphConvPlan> p(new GraphConvPlan());
  p->search_ = shared_from_this();
  p->engine_ = engines_[i];
  ITKIT_ASSIGN_OR_RETURN(p->plan_, BackendDescriptor::Create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
  (void)dnn().BackendSetAttribute(p->plan_.get(), static_cast<cudnnBackendAttributeName_t>(400) /* PLAN_HANDLE */,
                                  CUDNN_TYPE_HANDLE, 1, &handle_);
  ITKIT_RETURN_IF_ERROR(SetDescriptor(p->plan_, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs_[i], "plan config"));
  Status finalized = Finalize(p->plan_, "execution plan");
  if (!finalized.ok()) return Unsupported("engine ", engines_[i], ": ", finalized.message());
  int64_t workspace = 0, count = 0;
  ITKIT_GRAPH_CHECK(dnn().BackendGetAttribute(p->plan_.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                              CUDNN_TYPE_INT64, 1, &count, &workspace),
                    "plan workspace size");
  p->workspace_ = static_cast<size_t>(std::max<int64_t>(workspace, 0));
  return Result<std::unique_ptr<GraphConvPlan>>(std::move(p));
}

Status GraphConvPlan::Execute(cudnnHandle_t handle, const void* x, const void* w, void* y, void* workspace) const {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) |
                         reinterpret_cast<uintptr_t>(y) | reinterpret_cast<uintptr_t>(workspace);
  if (bits % kAlignment != 0)
    return InvalidArgument("graph convolution: a pointer is not ", kAlignment, "-byte aligned");
  const void* now[4] = {x, w, y, workspace};
  if (!pack_.get() || !std::equal(now, now + 4, pack_pointers_)) {
    pack_ = BackendDescriptor();
    ITKIT_ASSIGN_OR_RETURN(BackendDescriptor pack, BackendDescriptor::Create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR));
    void* pointers[3] = {const_cast<void*>(x), const_cast<void*>(w), y};
    const int64_t uids[3] = {kUidX, kUidW, kUidY};
    ITKIT_RETURN_IF_ERROR(
        Set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers, "pack data"));
    ITKIT_RETURN_IF_ERROR(Set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids, "pack uids"));
    ITKIT_RETURN_IF_ERROR(
        Set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace, "pack workspace"));
    ITKIT_RETURN_IF_ERROR(Finalize(pack, "variant pack"));
    pack_ = std::move(pack);
    std::copy(now, now + 4, pack_pointers_);
  }
  ITKIT_GRAPH_CHECK(dnn().BackendExecute(handle, plan_.get(), pack_.get()), "cudnnBackendExecute");
  executions.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

int64_t CudnnGraphExecutions() { return executions.load(std::memory_order_relaxed); }

namespace {

struct GraphConvRace {
  std::unique_ptr<GraphConvPlan> plan;  // the fastest candidate that agreed (null: none did)
  int candidate = -1;                    // its index in the search
  double graph_ms = 0, legacy_ms = 0;
  int tried = 0, refused = 0, disagreed = 0;  // candidates planned / refused by cuDNN / off the legacy output
  // Faster by more than timing noise (3 %): a near tie keeps the convolution API's
  // algorithm, whose workspace is usually the smaller.
  bool graph_wins() const { return plan && graph_ms < (1.0 - kTimingNoise) * legacy_ms; }
};

// Runs the convolution API's `legacy` (x, w, y, workspace) and up to `max_candidates`
// graph plans (workspace <= max_workspace) on random data of the spec's shape; keeps
// the candidates whose output agrees with legacy's (|diff| <= tolerance x output scale)
// and times each (best of 3).
Result<GraphConvRace> RaceGraphConv(CudaContext& ctx, const GraphConvSearch& search, const GraphConvSpec& spec,
                                    const LegacyConv& legacy, size_t legacy_workspace, size_t max_workspace,
                                    size_t max_candidates, double tolerance) {
  GraphConvRace race;
  std::vector<std::pair<size_t, std::unique_ptr<GraphConvPlan>>> plans;
  size_t workspace = legacy_workspace;
  for (size_t i = 0; i < search.candidates() && plans.size() < max_candidates; ++i) {
    auto plan = search.Plan(i);
    if (!plan.ok()) {
      ++race.refused;
      continue;
    }
    if ((*plan)->workspace_bytes() > max_workspace) continue;
    workspace = std::max(workspace, (*plan)->workspace_bytes());
    plans.emplace_back(i, std::move(*plan));
  }
  race.tried = static_cast<int>(plans.size());
  if (plans.empty()) return Result<GraphConvRace>(std::move(race));

  const bool half = spec.data == CUDNN_DATA_HALF;
  const size_t elem = half ? 2 : 4;
  const int64_t x_count = ElementCount(ShapeOf(spec.n, spec.cin, spec.in)),
                w_count = ElementCount(ShapeOf(spec.cout, spec.cin, spec.kernel)),
                y_count = ElementCount(ShapeOf(spec.n, spec.cout, spec.out));
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer x, ctx.Allocate(static_cast<size_t>(x_count) * elem));
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer w, ctx.Allocate(static_cast<size_t>(w_count) * elem));
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer y_legacy, ctx.Allocate(static_cast<size_t>(y_count) * elem));
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer y_graph, ctx.Allocate(static_cast<size_t>(y_count) * elem));
  DeviceBuffer ws;
  if (workspace) {
    ITKIT_ASSIGN_OR_RETURN(ws, ctx.Allocate(workspace));
  }
  ITKIT_RETURN_IF_ERROR(ctx.Activate());
  if (half) {
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(ctx, static_cast<__half*>(x.data), x_count, 3));
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(ctx, static_cast<__half*>(w.data), w_count, 4));
  } else {
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(ctx, static_cast<float*>(x.data), x_count, 3));
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(ctx, static_cast<float*>(w.data), w_count, 4));
  }
  auto run_legacy = [&]() { return legacy(x.data, w.data, y_legacy.data, ws.data); };
  ITKIT_RETURN_IF_ERROR(run_legacy());
  std::vector<std::pair<double, size_t>> timed;  // (best ms, slot in `plans`) of the agreeing candidates
  for (size_t slot = 0; slot < plans.size(); ++slot) {
    const GraphConvPlan& p = *plans[slot].second;
    auto run_graph = [&]() { return p.Execute(ctx.cudnn, x.data, w.data, y_graph.data, ws.data); };
    // NaN everywhere first (0xFF bytes are NaN in f16 and f32): a plan that writes
    // nothing, or part of Y, cannot pass for the previous candidate's output.
    ITKIT_CUDA_CHECK(cudaMemsetAsync(y_graph.data, 0xFF, static_cast<size_t>(y_count) * elem, ctx.stream));
    if (!run_graph().ok()) {
      ++race.refused;
      continue;
    }
    ITKIT_ASSIGN_OR_RETURN(const OutputDifference d,
                           CompareOutputs(ctx, y_legacy.data, y_graph.data, half, y_count, tolerance));
    if (!d.agree) {
      ++race.disagreed;
      LogWarning("CUDA: cuDNN graph engine ", p.engine(), " differs from the convolution API's output by ",
                 d.max_abs_diff, " (scale ", d.max_abs_library, "); not used");
      continue;
    }
    ITKIT_ASSIGN_OR_RETURN(const double ms, BestTimeMs(ctx, run_graph, 3));
    timed.emplace_back(ms, slot);
  }
  // As the convolution API's choice: the fastest, or within its timing noise the
  // smallest workspace.
  std::vector<AlgoCandidate> timings;
  for (const auto& [ms, slot] : timed) timings.push_back({ms, plans[slot].second->workspace_bytes()});
  if (const int pick = PickAlgorithm(timings); pick >= 0) {
    const auto& [ms, slot] = timed[static_cast<size_t>(pick)];
    race.graph_ms = ms;
    race.candidate = static_cast<int>(plans[slot].first);
    race.plan = std::move(plans[slot].second);
  }
  ITKIT_ASSIGN_OR_RETURN(race.legacy_ms, BestTimeMs(ctx, run_legacy, 3));
  return Result<GraphConvRace>(std::move(race));
}

}  // namespace

std::unique_ptr<GraphConvPlan> SelectGraphConvPlan(CudaContext& ctx, const GraphConvSpec& spec, const std::string& key,
                                                   const LegacyConv& legacy, size_t legacy_workspace) {
  using Mode = CudaBackendOptions::CudnnGraph;
  const Mode mode = ctx.options.cudnn_graph;
  if (mode == Mode::kOff || !dnn().has_graph_api()) return nullptr;
  TunedAlgo cached;
  bool has_cached = false;
  if (mode == Mode::kRace) {
    if (auto hit = ctx.tuning->Find(key)) {
      cached = *hit;
      has_cached = true;
    }
  }
  if (has_cached && cached.algo == 0) return nullptr;  // the convolution API won: no graph to build
  // Without autotune a recorded verdict is still used; nothing is raced.
  if (mode == Mode::kRace && !has_cached && !ctx.options.autotune) return nullptr;
  auto search = GraphConvSearch::Create(ctx.cudnn, spec);
  if (!search.ok()) {
    // kFirst is for tests that check the graph path: a refusal there is a warning.
    const std::string text = StrCat("CUDA: cuDNN's graph API declined a convolution (", search.status().message(),
                                    "); the convolution API runs it");
    if (mode == Mode::kFirst) {
      LogWarning(text);
    } else {
      LogInfo(text);
    }
    return nullptr;
  }
  const size_t cap = ctx.options.max_workspace_bytes;
  if (mode == Mode::kFirst) {
    for (size_t i = 0; i < (*search)->candidates(); ++i) {
      auto plan = (*search)->Plan(i);
      if (plan.ok() && (*plan)->workspace_bytes() <= cap) return std::move(*plan);
    }
    LogWarning("CUDA: none of cuDNN's ", (*search)->candidates(),
               " graph engines could be planned for a convolution; the convolution API runs it");
    return nullptr;
  }
  if (has_cached) {
    auto plan = (*search)->Plan(static_cast<size_t>(cached.algo - 1));
    if (plan.ok() && (*plan)->engine() == cached.math_type && (*plan)->workspace_bytes() == cached.workspace_bytes &&
        (*plan)->workspace_bytes() <= cap)
      return std::move(*plan);
    LogWarning("CUDA: the cached cuDNN graph engine ", cached.math_type, " is not available; racing again");
  }
  const bool f32_strict = spec.data == CUDNN_DATA_FLOAT && !spec.allow_tensor_cores;
  auto race = RaceGraphConv(ctx, **search, spec, legacy, legacy_workspace, cap, /*max_candidates=*/8,
                            /*tolerance=*/f32_strict ? 1e-4 : 1e-2);
  if (!race.ok()) {
    LogWarning("CUDA: racing cuDNN's graph engines failed (", race.status().message(),
               "); the convolution API runs it");
    return nullptr;
  }
  std::string engine = "none agreed";
  // Workspaces in the line: a winner's workspace joins the arena (the 3 GiB budget).
  if (race->plan)
    engine = StrCat("engine ", race->plan->engine(), " ", race->graph_ms, " ms, ",
                    race->plan->workspace_bytes() >> 20, " MiB workspace");
  std::unique_ptr<GraphConvPlan> chosen;
  int verdict = 0;
  if (race->graph_wins()) {
    verdict = race->candidate + 1;
    chosen = std::move(race->plan);
  }
  LogInfo("CUDA: convolution ", spec.cin, "->", spec.cout, " (", key, "): graph API ", engine,
          " vs convolution API ", race->legacy_ms, " ms, ", legacy_workspace >> 20, " MiB (", race->tried, " engines tried, ", race->refused,
          " refused, ", race->disagreed, " disagreed): ", chosen ? "graph API" : "convolution API", " runs it");
  Status saved = ctx.tuning->Insert(
      key, TunedAlgo{verdict, chosen ? static_cast<int>(chosen->engine()) : 0, chosen ? chosen->workspace_bytes() : 0});
  if (!saved.ok()) LogWarning("CUDA: ", saved.message());
  return chosen;
}

}  // namespace itkit::cuda
