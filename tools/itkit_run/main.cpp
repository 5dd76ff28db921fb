// itkit_run MODEL.onnx [--input x.npy | --shape 1,1,64,64,64] [--output y.npy]
//           [--repeat N] [--warmup N] [--threads N] [--device cpu|cuda] [--fp16]
//           [--disable-pass NAME]... [--list-passes] [--plan-only] [--profile]
// Runs a model on one input and prints the time per run and the peak memory;
// --profile also the time per op type over the timed runs (steps synchronised one by
// one, so the total is a little above a plain run's).
// --device cpu-f16|cpu-cl|cpu-f16-cl plans (and runs) on the CPU emulations of the CUDA
// backend's FP16 storage and channels-last layout, so `--plan-only` shows the arena a
// GPU plan would need (less cuDNN workspace) on a machine without a GPU.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "itkit/devices.h"
#include "itkit/log.h"
#include "itkit/onnx_importer.h"
#include "itkit/passes.h"
#include "itkit/session.h"
#include "npy.h"

namespace {

struct Args {
  std::string model, input, output, device = "cpu";
  itkit::Shape shape;
  int repeat = 1, warmup = 0, threads = 0;
  bool fp16 = false, list_passes = false, plan_only = false, profile = false;
  std::vector<std::string> disabled_passes;
};

void Usage() {
  std::fprintf(stderr,
               "usage: itkit_run MODEL.onnx [--input x.npy | --shape 1,1,64,64,64] [--output y.npy]\n"
               "                 [--repeat N] [--warmup N] [--threads N] [--device cpu|cuda] [--fp16]\n"
               "                 [--disable-pass NAME]... [--list-passes] [--plan-only] [--profile]\n"
               "  --device also takes cpu-f16, cpu-cl, cpu-f16-cl (CPU emulations of CUDA FP16 planning)\n");
}

bool ParseShape(const char* text, itkit::Shape* shape) {
  shape->clear();
  std::string s(text);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    try {
      shape->push_back(std::stoll(s.substr(pos, end - pos)));
    } catch (...) {
      return false;
    }
    pos = end + 1;
  }
  return !shape->empty();
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--input" && (v = next())) a->input = v;
    else if (arg == "--output" && (v = next())) a->output = v;
    else if (arg == "--shape" && (v = next())) { if (!ParseShape(v, &a->shape)) return false; }
    else if (arg == "--repeat" && (v = next())) a->repeat = std::max(1, std::atoi(v));
    else if (arg == "--warmup" && (v = next())) a->warmup = std::max(0, std::atoi(v));
    else if (arg == "--threads" && (v = next())) a->threads = std::atoi(v);
    else if (arg == "--device" && (v = next())) a->device = v;
    else if (arg == "--disable-pass" && (v = next())) a->disabled_passes.push_back(v);
    else if (arg == "--fp16") a->fp16 = true;
    else if (arg == "--list-passes") a->list_passes = true;
    else if (arg == "--plan-only") a->plan_only = true;
    else if (arg == "--profile") a->profile = true;
    else if (!arg.empty() && arg[0] != '-' && a->model.empty()) a->model = arg;
    else return false;
  }
  return a->list_passes || !a->model.empty();
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // Linux reports KiB
}

// Seconds per run by op type, slowest first, of a profile covering `runs` runs.
void PrintProfile(const std::map<std::string, itkit::StepTime>& profile, int runs) {
  std::vector<std::tuple<double, std::string, int64_t>> rows;
  double total = 0;
  for (const auto& [key, t] : profile) {
    const double sec = t.seconds / runs;
    rows.emplace_back(sec, key, static_cast<int64_t>(t.count) / runs);
    total += sec;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("profile per run (steps synchronised one by one): %.3f s\n", total);
  for (const auto& [sec, key, steps] : rows)
    std::printf("  %-36s %4lld steps  %8.3f s  %5.1f %%\n", key.c_str(), static_cast<long long>(steps), sec,
                total > 0 ? 100 * sec / total : 0.0);
}

int Fail(const itkit::Status& s) {
  std::fprintf(stderr, "itkit_run: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    Usage();
    return 2;
  }
  if (args.list_passes) {
    for (const itkit::PassInfo& p : itkit::AllPasses()) std::printf("%-28s %s\n", p.name, p.description);
    return 0;
  }
  auto model = itkit::LoadOnnxModel(args.model);
  if (!model.ok()) return Fail(model.status());

  itkit::SessionOptions options;
  options.threads = args.threads;
  options.disabled_passes = args.disabled_passes;
  options.profile_steps = args.profile;
  if (args.device == "cuda") {
    itkit::CudaBackendOptions cuda;
    cuda.fp16 = args.fp16;
    auto backend = itkit::CreateCudaBackend(cuda);
    if (!backend.ok()) return Fail(backend.status().WithContext("--device cuda"));
    options.backends.push_back(*backend);
  } else if (args.device == "cpu-f16") {
    options.backends.push_back(itkit::CreateHalfStorageCpuBackend());
  } else if (args.device == "cpu-cl" || args.device == "cpu-f16-cl") {
    options.backends.push_back(itkit::CreateChannelsLastCpuBackend(args.device == "cpu-f16-cl"));
  } else if (args.device != "cpu") {
    return Fail(itkit::InvalidArgument("--device must be cpu, cpu-f16, cpu-cl, cpu-f16-cl or cuda, got '", args.device,
                                       "'"));
  }
  if (args.fp16 && args.device != "cuda") {
    return Fail(itkit::InvalidArgument("--fp16 needs --device cuda"));
  }

  auto session = itkit::Session::Create(std::move(model).value(), options);
  if (!session.ok()) return Fail(session.status());
  if ((*session)->inputs().size() != 1) return Fail(itkit::Unsupported("itkit_run feeds models with exactly one input"));

  itkit::Tensor input;
  if (!args.input.empty()) {
    auto t = itkit::npy::Read(args.input);
    if (!t.ok()) return Fail(t.status());
    input = std::move(t).value();
  } else {
    itkit::Shape shape = args.shape;
    if (shape.empty()) {
      for (const itkit::Dim& d : (*session)->inputs()[0].dims) {
        if (!d.is_static()) return Fail(itkit::InvalidArgument("the input has symbolic dims: give --input or --shape"));
        shape.push_back(d.value);
      }
    }
    auto t = itkit::Tensor::Allocate(itkit::DType::kF32, shape);
    if (!t.ok()) return Fail(t.status());
    std::mt19937 rng(1234);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int64_t i = 0; i < t->size(); ++i) t->data<float>()[i] = dist(rng);
    input = std::move(t).value();
  }

  auto stats = (*session)->StatsFor({input.shape()});
  if (!stats.ok()) return Fail(stats.status());
  std::printf("model: %s\npasses applied:", args.model.c_str());
  for (const std::string& p : (*session)->applied_passes()) std::printf(" %s", p.c_str());
  std::printf("\nsteps: %zu (", stats->num_steps);
  for (const auto& [backend, n] : stats->steps_per_backend) std::printf(" %s=%zu", backend.c_str(), n);
  std::printf(" )\nactivation arena: %.1f MiB (one buffer per value would need %.1f MiB); weights %.1f MiB\n",
              stats->arena_bytes / 1048576.0, stats->naive_bytes / 1048576.0, stats->constant_bytes / 1048576.0);
  std::printf("values alone (no step workspaces): %.1f MiB; %zu outputs written in place\n",
              stats->value_arena_bytes / 1048576.0, stats->in_place_values);
  std::printf("values peak at %s: %.1f MiB alive\n", stats->peak_step.c_str(), stats->peak_live_bytes / 1048576.0);
  std::printf("storage: %zu f16 values, %zu channels-last values, %zu casts, %zu layout transposes\n",
              stats->f16_values, stats->channels_last_values, stats->storage_casts, stats->layout_transposes);
  if (args.plan_only) return 0;

  std::vector<itkit::Tensor> outputs;
  for (int i = 0; i < args.warmup; ++i) {
    auto out = (*session)->Run(std::vector<itkit::Tensor>{input});
    if (!out.ok()) return Fail(out.status());
  }
  (*session)->ClearStepProfile();  // the profile covers the timed runs, not planning and warm-up
  double total = 0, best = 1e30;
  for (int i = 0; i < args.repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = (*session)->Run(std::vector<itkit::Tensor>{input});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!out.ok()) return Fail(out.status());
    outputs = std::move(out).value();
    total += s;
    best = std::min(best, s);
    std::printf("run %d: %.3f s\n", i + 1, s);
  }
  std::printf("time per run: mean %.3f s, best %.3f s over %d runs\npeak RSS: %.1f MiB\n", total / args.repeat, best,
              args.repeat, PeakRssMiB());
  if (args.profile) PrintProfile((*session)->StepProfile(), args.repeat);
  for (size_t i = 0; i < outputs.size(); ++i)
    std::printf("output %zu '%s': %s %s\n", i, (*session)->outputs()[i].name.c_str(),
                std::string(itkit::DTypeName(outputs[i].dtype())).c_str(), itkit::ShapeToString(outputs[i].shape()).c_str());
  if (!args.output.empty()) {
    if (outputs.empty()) return Fail(itkit::Internal("no outputs"));
    itkit::Status s = itkit::npy::Write(args.output, outputs[0]);
    if (!s.ok()) return Fail(s);
  }
  return 0;
}
