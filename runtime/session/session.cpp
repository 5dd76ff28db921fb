#include "itkit/session.h"

#include <algorithm>

#include "cpu/cpu_backend.h"
#include "itkit/log.h"
#include "itkit/passes.h"
#include "itkit/thread_pool.h"
#include "session/plan.h"

namespace itkit {

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::Create(Model model, SessionOptions options) {
  std::unique_ptr<Session> session(new Session());
  session->options_ = std::move(options);
  ITKIT_RETURN_IF_ERROR(ValidateAndSortGraph(model.graph).WithContext(model.source));
  ITKIT_RETURN_IF_ERROR(
      RunPasses(model.graph, session->options_.disabled_passes, &session->applied_passes_).WithContext(model.source));
  session->model_ = std::move(model);
  session->pool_ = std::make_unique<ThreadPool>(session->options_.threads);
  session->backends_ = session->options_.backends;
  session->backends_.push_back(CreateCpuBackend());
  return session;
}

Result<Plan*> Session::PlanFor(const std::vector<const Tensor*>& inputs, const RunOptions& run_options) {
  // Key: where each input lives, every input's shape, plus the values of
  // shape-valued inputs (see plan.h), appended as an extra pseudo-shape.
  std::vector<Shape> key;
  Shape devices;  // first entry: where each input lives
  for (const Tensor* t : inputs) devices.push_back(t ? static_cast<int64_t>(t->device()) : 0);
  key.push_back(std::move(devices));
  for (const Tensor* t : inputs) {
    key.push_back(t ? t->shape() : Shape{});
    if (t && IsShapeValuedInput(*t)) key.push_back(t->ToInt64Vector());
  }
  key.push_back({run_options.outputs_on_device ? 1 : 0});
  for (size_t i = 0; i < plans_.size(); ++i) {
    if (plans_[i].first != key) continue;
    if (i != 0) std::rotate(plans_.begin(), plans_.begin() + static_cast<long>(i), plans_.begin() + static_cast<long>(i) + 1);
    return plans_.front().second.get();
  }
  PlanInputs in{&model_.graph, &backends_, pool_.get(), run_options.outputs_on_device};
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<Plan> plan, BuildPlan(in, inputs));
  plans_.insert(plans_.begin(), {std::move(key), std::move(plan)});
  if (plans_.size() > std::max<size_t>(1, options_.max_cached_plans)) plans_.pop_back();
  return plans_.front().second.get();
}

Result<std::vector<Tensor>> Session::Run(const std::vector<Tensor>& inputs) { return Run(inputs, RunOptions{}); }

Result<std::vector<Tensor>> Session::Run(const std::vector<Tensor>& inputs, const RunOptions& run_options) {
  if (inputs.size() != model_.graph.inputs.size())
    return InvalidArgument("the model has ", model_.graph.inputs.size(), " inputs, ", inputs.size(), " were given");
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : inputs) ptrs.push_back(&t);
  ITKIT_ASSIGN_OR_RETURN(Plan * plan, PlanFor(ptrs, run_options));
  std::vector<Tensor> outputs;
  ITKIT_RETURN_IF_ERROR(ExecutePlan(*plan, backends_, pool_.get(), ptrs, outputs, options_.record_steps,
                                    options_.profile_steps));
  return outputs;
}

Result<std::vector<Tensor>> Session::Run(const std::vector<NamedTensor>& inputs) {
  std::vector<Tensor> ordered(model_.graph.inputs.size());
  for (const NamedTensor& nt : inputs) {
    bool found = false;
    for (size_t i = 0; i < model_.graph.inputs.size(); ++i) {
      if (model_.graph.inputs[i].name == nt.name) {
        ordered[i] = nt.tensor;
        found = true;
      }
    }
    if (!found) return InvalidArgument("the model has no input named '", nt.name, "'");
  }
  for (size_t i = 0; i < ordered.size(); ++i)
    if (!ordered[i].defined()) return InvalidArgument("graph input '", model_.graph.inputs[i].name, "' was not given");
  return Run(ordered);
}

Result<PlanStats> Session::StatsFor(const std::vector<Shape>& input_shapes) {
  if (input_shapes.size() != model_.graph.inputs.size())
    return InvalidArgument("the model has ", model_.graph.inputs.size(), " inputs, ", input_shapes.size(), " shapes were given");
  // Planning needs only shapes: zero-size views with the right shape stand in.
  std::vector<Tensor> probes;
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    DType dtype = model_.graph.inputs[i].dtype == DType::kUndefined ? DType::kF32 : model_.graph.inputs[i].dtype;
    probes.push_back(Tensor::View(dtype, input_shapes[i], nullptr));
  }
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : probes) ptrs.push_back(&t);
  ITKIT_ASSIGN_OR_RETURN(Plan * plan, PlanFor(ptrs, RunOptions{}));
  return plan->stats;
}

void Session::ClearStepProfile() {
  for (auto& entry : plans_) {
    entry.second->profile.clear();
    entry.second->profile_by_step.clear();
  }
}

std::map<std::string, StepTime> Session::StepProfile(ProfileBy by) const {
  std::map<std::string, StepTime> total;
  for (const auto& entry : plans_)
    for (const auto& [key, t] : by == ProfileBy::kOpType ? entry.second->profile : entry.second->profile_by_step) {
      total[key].count += t.count;
      total[key].seconds += t.seconds;
    }
  return total;
}

}  // namespace itkit
