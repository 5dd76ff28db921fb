// itkit_cuda_bench: the GPU-machine measurements of bench/device/run.sh.
//
//   itkit_cuda_bench zoo CASE_DIR...      every ONNX test case (model.onnx +
//       test_data_set_*/input_0.pb) on the CPU, CUDA FP32 and CUDA FP16: relative
//       error vs the CPU and vs the stored (PyTorch) output, argmax agreement over
//       the class axis, ops placed on the GPU. Exit 1 when a target is missed
//       (FP32 <= 1e-3, FP16 <= 1e-2, argmax >= 99.9 % per case; for FP16, positions
//       whose CPU top-two logits lie within 2^-10 relative are ties, not judged).
//   itkit_cuda_bench unet MODEL.onnx [--fp16] [--tf32] [--batch 4] [--patch 128]
//       [--stride 64] [--volume 320,512,512] [--repeat 20] [--warmup 3]
//       [--tuning-cache DIR] [--json FILE] [--profile]
//       per-window time (output sliced to one element; input on the GPU as in
//       torch_reference.py, then uploaded from the host; end-to-end: host input,
//       logits copied to the host), then a whole
//       sliding-window pass (Gaussian blending and argmax on the GPU through
//       itkit/cuda_accumulator.h) with peak GPU memory. As in torch_reference.py the
//       volume is on the GPU before the clock starts and windows are cut there
//       (cuda::GatherWindows, on the backend's stream); the pipeline instead extracts
//       them on the host, on a helper thread, while the GPU runs the previous batch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "itkit/cuda_accumulator.h"
#include "itkit/cuda_backend.h"
#include "itkit/cuda_window_gather.h"
#include "itkit/devices.h"
#include "itkit/onnx_importer.h"
#include "itkit/session.h"

namespace {

using namespace itkit;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Fail(const Status& s) {
  std::fprintf(stderr, "itkit_cuda_bench: %s\n", s.ToString().c_str());
  return 2;
}

Tensor RandomNormal(const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::Allocate(DType::kF32, shape).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = n(rng);
  return t;
}

// ITKIT_HALF_STORAGE=0 / ITKIT_CUDA_GRAPHS=0 / ITKIT_CHANNELS_LAST=0 switch those
// features off, for ablations; ITKIT_CUDNN_WORKSPACE_MB sets the workspace cap;
// ITKIT_OWN_KERNELS=library|own|auto picks CudaBackendOptions::own_kernels;
// ITKIT_CUDNN_GRAPH=0 keeps cuDNN's graph-API engines out of the convolution race
// (CreateCudaBackend reads it, for every program; printed here).
bool EnvOff(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "0";
}

Result<std::shared_ptr<Backend>> Cuda(bool fp16, bool tf32, const std::string& cache) {
  CudaBackendOptions o;
  o.fp16 = fp16;
  o.allow_tf32 = tf32;
  o.tuning_cache_dir = cache;
  o.half_storage = !EnvOff("ITKIT_HALF_STORAGE");
  o.cuda_graphs = !EnvOff("ITKIT_CUDA_GRAPHS");
  o.channels_last = !EnvOff("ITKIT_CHANNELS_LAST");
  // ITKIT_CUDNN_WORKSPACE_MB: the per-convolution workspace cap (default 1 GiB); the
  // suspect for TF32's poor algorithm choice at batch 4.
  if (const char* mb = std::getenv("ITKIT_CUDNN_WORKSPACE_MB"); mb && *mb)
    o.max_workspace_bytes = static_cast<size_t>(std::strtoull(mb, nullptr, 10)) << 20;
  const char* own = std::getenv("ITKIT_OWN_KERNELS");
  const std::string own_kernels = own && *own ? own : "auto";
  if (own_kernels == "library") {
    o.own_kernels = CudaBackendOptions::OwnKernels::kLibrary;
  } else if (own_kernels == "own") {
    o.own_kernels = CudaBackendOptions::OwnKernels::kOwn;
  } else if (own_kernels != "auto") {
    return InvalidArgument("ITKIT_OWN_KERNELS must be library, own or auto, not '", own_kernels, "'");
  }
  std::printf("backend: %s%s, half storage %s, channels-last %s, CUDA graphs %s, cuDNN workspace cap %zu MiB, "
              "own kernels %s, cuDNN graph API %s\n",
              fp16 ? "fp16" : "fp32", tf32 ? " tf32" : "", o.half_storage ? "on" : "off",
              fp16 && o.channels_last ? "on" : "off", o.cuda_graphs ? "on" : "off", o.max_workspace_bytes >> 20,
              own_kernels.c_str(), EnvOff("ITKIT_CUDNN_GRAPH") ? "off" : "on");  // CreateCudaBackend applies it
  return CreateCudaBackend(o);
}

// ITKIT_DISABLE_PASSES=a,b: graph passes switched off, for ablations.
std::vector<std::string> DisabledPasses() {
  std::vector<std::string> names;
  const char* v = std::getenv("ITKIT_DISABLE_PASSES");
  std::string list = v ? v : "";
  for (size_t pos = 0; pos < list.size();) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    if (end > pos) names.push_back(list.substr(pos, end - pos));
    pos = end + 1;
  }
  if (!names.empty()) std::printf("passes off: %s\n", list.c_str());
  return names;
}

// ---- zoo ---------------------------------------------------------------------------

struct Diff {
  double rel = 0, agree = 1;  // relative L2 error; argmax agreement over axis 1 (1 when n/a)
};

// Positions where the reference's top two classes differ by less than `tie_margin`
// relative are ties at the precision under test and are not judged (as the test
// runner's --argmax-tie-margin).
Diff Compare(const Tensor& got, const Tensor& ref, double tie_margin = 0.0) {
  Diff d;
  if (got.shape() != ref.shape() || got.dtype() != ref.dtype()) {
    d.rel = INFINITY;
    d.agree = 0;
    return d;
  }
  if (!IsFloat(ref.dtype())) {
    int64_t same = 0;
    for (int64_t i = 0; i < ref.size(); ++i) same += got.GetAsInt64(i) == ref.GetAsInt64(i);
    d.agree = ref.size() ? static_cast<double>(same) / static_cast<double>(ref.size()) : 1.0;
    d.rel = 1.0 - d.agree;
    return d;
  }
  double e2 = 0, r2 = 0;
  for (int64_t i = 0; i < ref.size(); ++i) {
    const double a = got.GetAsDouble(i), b = ref.GetAsDouble(i);
    e2 += std::isfinite(a) ? (a - b) * (a - b) : INFINITY;
    r2 += b * b;
  }
  d.rel = std::sqrt(e2) / std::max(std::sqrt(r2), 1e-30);
  if (ref.rank() >= 2 && ref.dim(1) > 1) {  // class axis 1
    const int64_t n = ref.dim(0), c = ref.dim(1), inner = ref.size() / (n * c);
    int64_t same = 0, judged = 0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t ga = 0, ra = 0;
        for (int64_t k = 1; k < c; ++k) {
          const int64_t at = (b * c + k) * inner + i;
          if (got.GetAsDouble(at) > got.GetAsDouble((b * c + ga) * inner + i)) ga = k;
          if (ref.GetAsDouble(at) > ref.GetAsDouble((b * c + ra) * inner + i)) ra = k;
        }
        const double top = ref.GetAsDouble((b * c + ra) * inner + i);
        double second = -INFINITY;
        for (int64_t k = 0; k < c; ++k)
          if (k != ra) second = std::max(second, ref.GetAsDouble((b * c + k) * inner + i));
        if (top - second < tie_margin * std::fabs(top)) continue;  // a tie: not judged
        ++judged;
        same += ga == ra;
      }
    d.agree = judged ? static_cast<double>(same) / static_cast<double>(judged) : 1.0;
  }
  return d;
}

int RunZoo(const std::vector<std::string>& dirs) {
  auto cuda32 = Cuda(false, false, "");
  auto cuda16 = Cuda(true, false, "");
  if (!cuda32.ok()) return Fail(cuda32.status());
  if (!cuda16.ok()) return Fail(cuda16.status());
  int failures = 0;
  std::printf("%-26s %-6s %10s %10s %9s %10s %9s %12s\n", "case", "set", "fp32 err", "vs torch", "argmax32",
              "fp16 err", "argmax16", "gpu steps");
  for (const std::string& dir : dirs) {
    std::filesystem::path path(dir);
    if (path.filename().empty()) path = path.parent_path();  // "zoo/case/"
    const std::string name = path.filename().string();
    auto model = LoadOnnxModel(dir + "/model.onnx");
    if (!model.ok()) {
      std::printf("%-26s load failed: %s\n", name.c_str(), model.status().ToString().c_str());
      ++failures;
      continue;
    }
    std::unique_ptr<Session> sessions[3];
    std::shared_ptr<Backend> gpu[3] = {nullptr, *cuda32, *cuda16};
    bool ok = true;
    for (int k = 0; k < 3 && ok; ++k) {
      SessionOptions so;
      if (gpu[k]) so.backends.push_back(gpu[k]);
      auto s = Session::Create(*model, so);
      if (!s.ok()) {
        std::printf("%-26s session failed: %s\n", name.c_str(), s.status().ToString().c_str());
        ok = false;
      } else {
        sessions[k] = std::move(s).value();
      }
    }
    if (!ok) {
      ++failures;
      continue;
    }
    for (int set = 0;; ++set) {
      const std::string set_dir = dir + "/test_data_set_" + std::to_string(set);
      if (!std::filesystem::exists(set_dir + "/input_0.pb")) break;
      auto input = LoadOnnxTensor(set_dir + "/input_0.pb");
      auto stored = LoadOnnxTensor(set_dir + "/output_0.pb");
      if (!input.ok()) {
        std::printf("%-26s %d: %s\n", name.c_str(), set, input.status().ToString().c_str());
        ++failures;
        continue;
      }
      std::vector<Tensor> outs[3];
      std::string error;
      for (int k = 0; k < 3; ++k) {
        auto r = sessions[k]->Run(std::vector<Tensor>{input->tensor});
        if (!r.ok()) {
          error = std::string(k == 0 ? "cpu" : k == 1 ? "cuda-fp32" : "cuda-fp16") + ": " + r.status().ToString();
          break;
        }
        outs[k] = std::move(r).value();
      }
      if (!error.empty()) {
        std::printf("%-26s %-6d %s\n", name.c_str(), set, error.c_str());
        ++failures;
        continue;
      }
      // FP16: near-ties of the CPU's logits (within one f16 step, 2^-10) are not judged.
      const Diff d32 = Compare(outs[1][0], outs[0][0]), d16 = Compare(outs[2][0], outs[0][0], 1.0 / 1024);
      const Diff torch = stored.ok() ? Compare(outs[1][0], stored->tensor) : Diff{NAN, NAN};
      auto stats = sessions[1]->StatsFor({input->tensor.shape()});
      size_t on_gpu = 0, total = 0;
      if (stats.ok()) {
        total = stats->num_steps;
        on_gpu = stats->steps_per_backend["cuda"];
      }
      // Per case, stricter than the whole-zoo FP16 criterion (the runner's step).
      const bool pass = d32.rel <= 1e-3 && d16.rel <= 1e-2 && d32.agree >= 0.999 && d16.agree >= 0.999;
      failures += !pass;
      std::printf("%-26s %-6d %10.2e %10.2e %8.3f%% %10.2e %8.3f%% %5zu/%-6zu %s\n", name.c_str(), set, d32.rel,
                  torch.rel, 100 * d32.agree, d16.rel, 100 * d16.agree, on_gpu, total, pass ? "ok" : "FAIL");
    }
  }
  std::printf("zoo on CUDA: %s (%d failing)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}

// ---- reference U-Net timing ----------------------------------------------------------------

struct UNetArgs {
  std::string model, cache, json;
  bool fp16 = false, tf32 = false;
  int64_t batch = 4, patch = 128, stride = 64;
  std::vector<int64_t> volume = {320, 512, 512};
  int repeat = 20, warmup = 3;
  bool profile = false;
};

// Where a window's time goes: every step synchronised and timed (SessionOptions::
// profile_steps), summed by op type over `runs` runs after a planning run.
Status PrintProfile(const Model& model, const SessionOptions& base, const Tensor& x, int64_t batch, int runs) {
  SessionOptions so = base;
  so.profile_steps = true;
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<Session> s, Session::Create(model, so));
  ITKIT_RETURN_IF_ERROR(s->Run(std::vector<Tensor>{x}).status());
  s->ClearStepProfile();  // the planning run's times out of both tables below
  for (int i = 0; i < runs; ++i) ITKIT_RETURN_IF_ERROR(s->Run(std::vector<Tensor>{x}).status());
  std::vector<std::pair<double, std::string>> rows;
  std::map<std::string, size_t> counts;
  double total = 0;
  for (const auto& [key, t] : s->StepProfile()) {
    counts[key] = t.count / static_cast<size_t>(runs);
    rows.emplace_back(t.seconds, key);
    total += t.seconds;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("profile (steps synchronised one by one, so slower than a plain run): %.3f ms/window\n",
              total * 1000 / runs / static_cast<double>(batch));
  for (const auto& [sec, key] : rows)
    std::printf("  %-32s %4zu steps  %8.3f ms/window  %5.1f %%\n", key.c_str(), counts[key],
                sec * 1000 / runs / static_cast<double>(batch), total > 0 ? 100 * sec / total : 0.0);
  // The slowest single steps, per run.
  std::vector<std::pair<double, std::string>> steps;
  for (const auto& [key, t] : s->StepProfile(Session::ProfileBy::kStep))
    steps.emplace_back(t.count ? t.seconds / static_cast<double>(t.count) : 0.0, key);
  std::sort(steps.rbegin(), steps.rend());
  std::printf("slowest steps (ms per window):\n");
  for (size_t i = 0; i < steps.size() && i < 15; ++i)
    std::printf("  %8.3f  %s\n", steps[i].first * 1000 / static_cast<double>(batch), steps[i].second.c_str());
  return Status::Ok();
}

bool ParseList(const char* s, std::vector<int64_t>* out) {
  out->clear();
  for (const char* p = s; *p;) {
    char* end = nullptr;
    out->push_back(std::strtoll(p, &end, 10));
    if (end == p) return false;
    p = *end == ',' ? end + 1 : end;
  }
  return out->size() == 3;
}

// The model with its first output reduced to one element by a Slice: the network
// runs in full on the GPU but only 4 bytes come back.
Model SlicedOutput(Model m) {
  Graph& g = m.graph;
  const std::string out = g.outputs[0].name, sliced = out + "_sliced";
  auto ints = [](std::vector<int64_t> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    return Tensor::FromVector(v, {n}).value();
  };
  g.initializers["bench_starts"] = ints({0, 0, 0, 0, 0});
  g.initializers["bench_ends"] = ints({1, 1, 1, 1, 1});
  Node s;
  s.name = "bench_slice";
  s.op_type = "Slice";
  s.inputs = {out, "bench_starts", "bench_ends"};
  s.outputs = {sliced};
  g.nodes.push_back(s);
  g.outputs[0] = ValueInfo{sliced, g.outputs[0].dtype, false, {}};
  g.outputs.resize(1);
  return m;
}

std::vector<int64_t> Starts(int64_t size, int64_t patch, int64_t stride) {
  if (size <= patch) return {0};
  const int64_t n = (size - patch + stride - 1) / stride + 1;  // nnU-Net's count, evenly spread
  std::vector<int64_t> s;
  for (int64_t i = 0; i < n; ++i)
    s.push_back(static_cast<int64_t>(std::llround(static_cast<double>(i) * (size - patch) / (n - 1))));
  return s;
}

int RunUNet(const UNetArgs& a) {
  auto model = LoadOnnxModel(a.model);
  if (!model.ok()) return Fail(model.status());
  auto backend = Cuda(a.fp16, a.tf32, a.cache);
  if (!backend.ok()) return Fail(backend.status());
  const Shape window = {a.batch, 1, a.patch, a.patch, a.patch};
  const Tensor x = RandomNormal(window, 1);
  // The same window already on the GPU, as torch_reference.py times PyTorch.
  auto x_buf = (*backend)->Allocate(x.bytes());
  if (!x_buf.ok()) return Fail(x_buf.status());
  Tensor x_dev = Tensor::Wrap(DType::kF32, window, x_buf->owner, x_buf->data, DeviceKind::kCuda);
  if (Status st = (*backend)->CopyFromHost(x, x_dev); !st.ok()) return Fail(st);
  auto time_session = [&](Session& s, const Tensor& input, double* plan_ms) -> Result<double> {
    const auto t0 = Clock::now();
    ITKIT_RETURN_IF_ERROR(s.Run(std::vector<Tensor>{input}).status());  // plans, tunes, uploads weights
    *plan_ms = Ms(t0, Clock::now());
    for (int i = 1; i < a.warmup; ++i) ITKIT_RETURN_IF_ERROR(s.Run(std::vector<Tensor>{input}).status());
    std::vector<double> times;
    for (int i = 0; i < a.repeat; ++i) {
      const auto t = Clock::now();
      ITKIT_RETURN_IF_ERROR(s.Run(std::vector<Tensor>{input}).status());
      times.push_back(Ms(t, Clock::now()));
    }
    return Median(times) / static_cast<double>(a.batch);
  };
  SessionOptions so;
  so.backends.push_back(*backend);
  so.disabled_passes = DisabledPasses();
  double plan_ms = 0, plan2_ms = 0, plan3_ms = 0, device_ms = 0, upload_ms = 0, e2e_ms = 0;
  {
    auto s = Session::Create(SlicedOutput(*model), so);
    if (!s.ok()) return Fail(s.status());
    auto t = time_session(**s, x_dev, &plan_ms);
    if (!t.ok()) return Fail(t.status());
    device_ms = *t;
    t = time_session(**s, x, &plan3_ms);
    if (!t.ok()) return Fail(t.status());
    upload_ms = *t;
    auto stats = (*s)->StatsFor({window});
    if (stats.ok())
      std::printf("plan: %zu steps, %zu on the GPU, GPU arena %.0f MiB, %zu f16 values, %zu channels-last values, "
                  "%zu casts, %zu layout transposes\n",
                  stats->num_steps, stats->steps_per_backend["cuda"], stats->arena_bytes_per_backend["cuda"] / 1048576.0,
                  stats->f16_values, stats->channels_last_values, stats->storage_casts, stats->layout_transposes);
  }
  std::printf("window %ldx%ld^3 %s: %.3f ms/window, input on the GPU (%.3f ms uploaded from the host), first run "
              "%.0f ms (plan+tune)\n",
              static_cast<long>(a.batch), static_cast<long>(a.patch), a.fp16 ? "fp16" : "fp32", device_ms, upload_ms,
              plan_ms);
  std::printf("convolutions run through cuDNN's graph API so far: %lld\n",
              static_cast<long long>(cuda::CudnnGraphExecutions()));
  if (a.profile) {
    Status p = PrintProfile(SlicedOutput(*model), so, x_dev, a.batch, 5);
    if (!p.ok()) std::printf("profile failed: %s\n", p.message().c_str());
  }
  {
    auto s = Session::Create(*model, so);
    if (!s.ok()) return Fail(s.status());
    auto t = time_session(**s, x, &plan2_ms);
    if (!t.ok()) return Fail(t.status());
    e2e_ms = *t;
    std::printf("window end-to-end (logits to the host): %.3f ms/window\n", e2e_ms);
  }
  // The sliding window's own session: one plan (logits kept on the GPU), one arena.
  (void)cuda::ResetPeakMemory(**backend);
  auto s = Session::Create(*model, so);
  if (!s.ok()) return Fail(s.status());

  // Sliding window over the volume, which is on the GPU (uploaded before the clock).
  const int64_t D = a.volume[0], H = a.volume[1], W = a.volume[2], P = a.patch;
  const Tensor volume = RandomNormal({D, H, W}, 2);
  auto volume_buf = (*backend)->Allocate(volume.bytes());
  if (!volume_buf.ok()) return Fail(volume_buf.status());
  Tensor volume_dev = Tensor::Wrap(DType::kF32, volume.shape(), volume_buf->owner, volume_buf->data, DeviceKind::kCuda);
  if (Status st = (*backend)->CopyFromHost(volume, volume_dev); !st.ok()) return Fail(st);
  auto batch_buf = (*backend)->Allocate(static_cast<size_t>(ElementCount(window)) * sizeof(float));
  if (!batch_buf.ok()) return Fail(batch_buf.status());
  Tensor batch = Tensor::Wrap(DType::kF32, window, batch_buf->owner, batch_buf->data, DeviceKind::kCuda);
  if (Status st = (*backend)->Synchronize(); !st.ok()) return Fail(st);
  std::vector<std::array<int64_t, 3>> origins;
  for (int64_t z : Starts(D, P, a.stride))
    for (int64_t y : Starts(H, P, a.stride))
      for (int64_t xx : Starts(W, P, a.stride)) origins.push_back({z, y, xx});
  // Logits stay on the GPU for the accumulator (RunOptions::outputs_on_device); two
  // probe runs plan that variant and record its CUDA graph before the clock starts.
  RunOptions keep;
  keep.outputs_on_device = true;
  auto probe = (*s)->Run(std::vector<Tensor>{batch}, keep);  // the loop's plan: device input
  if (probe.ok()) probe = (*s)->Run(std::vector<Tensor>{batch}, keep);
  if (!probe.ok()) return Fail(probe.status());
  cuda::AccumulatorOptions ao;
  ao.num_classes = (*probe)[0].dim(1);
  ao.volume = {D, H, W};
  ao.patch = {P, P, P};
  ao.keep_averages = false;  // labels only, as the pipeline: a patch-deep ring of slices
  auto acc = cuda::SlidingWindowAccumulator::Create(ao, *backend);
  if (!acc.ok()) return Fail(acc.status());
  const auto t0 = Clock::now();
  double gather_ms = 0, run_ms = 0, acc_ms = 0;
  for (size_t first = 0; first < origins.size(); first += static_cast<size_t>(a.batch)) {
    std::vector<std::array<int64_t, 3>> these, filled;
    const auto g0 = Clock::now();
    for (int64_t b = 0; b < a.batch; ++b) {
      // A short last batch repeats its last window (its logits are not accumulated twice).
      const auto& o = origins[std::min(first + static_cast<size_t>(b), origins.size() - 1)];
      if (first + static_cast<size_t>(b) < origins.size()) these.push_back(o);
      filled.push_back(o);
    }
    // One launch on the backend's stream, ordered before the session's run (as
    // torch_reference.py's slicing is one copy kernel on its stream).
    if (Status st = cuda::GatherWindows(**backend, volume_dev, filled, batch); !st.ok()) return Fail(st);
    // Synchronised after the gather and after the accumulation, so that each phase's
    // time is its GPU time (two waits per batch: ~0.1 % of the pass).
    if (Status st = (*backend)->Synchronize(); !st.ok()) return Fail(st);
    const auto g1 = Clock::now();
    auto logits = (*s)->Run(std::vector<Tensor>{batch}, keep);
    if (!logits.ok()) return Fail(logits.status());
    const auto g2 = Clock::now();
    Tensor used = (*logits)[0];
    if (static_cast<int64_t>(these.size()) < a.batch) {
      Shape part = used.shape();
      part[0] = static_cast<int64_t>(these.size());
      used = used.Reshaped(part);  // the leading windows, same memory
    }
    Status st = (*acc)->Accumulate(used, these);
    if (st.ok()) st = (*backend)->Synchronize();
    if (!st.ok()) return Fail(st);
    gather_ms += Ms(g0, g1);
    run_ms += Ms(g1, g2);
    acc_ms += Ms(g2, Clock::now());
  }
  const auto l0 = Clock::now();
  auto labels = (*acc)->ArgMax(DType::kU8);
  if (!labels.ok()) return Fail(labels.status());
  const double labels_ms = Ms(l0, Clock::now()), total_ms = Ms(t0, Clock::now());
  auto mem = cuda::GetMemoryStats(**backend);
  // The accumulator allocates through the backend's context, so the backend's peak
  // already holds it (it was counted twice until session 5: ~1.3 GiB too much).
  const double peak_mib = mem.ok() ? mem->peak_bytes / 1048576.0 : 0;
  const double used_mib = mem.ok() ? (mem->device_total - mem->device_free) / 1048576.0 : 0;
  auto loop_stats = (*s)->StatsFor({window});
  // The GPU's arena only (steps a backend declined plan theirs on the CPU).
  const double arena_mib = loop_stats.ok() ? loop_stats->arena_bytes_per_backend["cuda"] / 1048576.0 : 0;
  std::printf("sliding window %ldx%ldx%ld, patch %ld, stride %ld: %zu windows in %.2f s (%.2f ms/window: gather %.0f "
              "ms, network %.0f ms, accumulate %.0f ms, labels to the host %.0f ms), peak GPU %.0f MiB (of which arena %.0f, accumulator %.0f, "
              "volume %.0f; device in use %.0f MiB)\n",
              static_cast<long>(D), static_cast<long>(H), static_cast<long>(W), static_cast<long>(P),
              static_cast<long>(a.stride), origins.size(), total_ms / 1000, total_ms / origins.size(), gather_ms,
              run_ms, acc_ms, labels_ms, peak_mib, arena_mib, (*acc)->device_bytes() / 1048576.0, volume.bytes() / 1048576.0,
              used_mib);
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (!f) return Fail(IoError("cannot write ", a.json));
    std::fprintf(f,
                 "{\"impl\": \"itkit\", \"precision\": \"%s\", \"batch\": %ld, \"patch\": %ld, \"window_ms\": %.4f, "
                 "\"window_ms_host_input\": %.4f, \"window_ms_e2e\": %.4f, \"first_run_ms\": %.1f, \"volume\": [%ld, %ld, %ld], \"windows\": %zu, "
                 "\"volume_s\": %.4f, \"peak_gpu_mib\": %.1f, \"device_used_mib\": %.1f, \"gpu\": \"%s\"}\n",
                 a.fp16 ? "fp16" : (a.tf32 ? "tf32" : "fp32"), static_cast<long>(a.batch), static_cast<long>(P),
                 device_ms, upload_ms, e2e_ms, plan_ms, static_cast<long>(D), static_cast<long>(H), static_cast<long>(W),
                 origins.size(), total_ms / 1000, peak_mib, used_mib, mem.ok() ? mem->device_name.c_str() : "");
    std::fclose(f);
  }
  return 0;
}

void Usage() {
  std::fprintf(stderr,
               "usage: itkit_cuda_bench zoo CASE_DIR...\n"
               "       itkit_cuda_bench unet MODEL.onnx [--fp16] [--tf32] [--batch N] [--patch P] [--stride S]\n"
               "                        [--volume D,H,W] [--repeat N] [--warmup N] [--tuning-cache DIR] [--json F]\n"
               "                        [--profile]  (time per op type, steps synchronised)\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    Usage();
    return 2;
  }
  const std::string mode = argv[1];
  if (mode == "zoo") return RunZoo(std::vector<std::string>(argv + 2, argv + argc));
  if (mode != "unet") {
    Usage();
    return 2;
  }
  UNetArgs a;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--fp16") a.fp16 = true;
    else if (arg == "--tf32") a.tf32 = true;
    else if (arg == "--profile") a.profile = true;
    else if (arg == "--batch" && v) a.batch = std::atoll(argv[++i]);
    else if (arg == "--patch" && v) a.patch = std::atoll(argv[++i]);
    else if (arg == "--stride" && v) a.stride = std::atoll(argv[++i]);
    else if (arg == "--repeat" && v) a.repeat = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--warmup" && v) a.warmup = std::max(1, std::atoi(argv[++i]));
    else if (arg == "--tuning-cache" && v) a.cache = argv[++i];
    else if (arg == "--json" && v) a.json = argv[++i];
    else if (arg == "--volume" && v) {
      if (!ParseList(argv[++i], &a.volume)) {
        Usage();
        return 2;
      }
    } else if (arg[0] != '-' && a.model.empty()) a.model = arg;
    else {
      Usage();
      return 2;
    }
  }
  if (a.model.empty() || a.batch < 1 || a.patch < 1 || a.stride < 1) {
    Usage();
    return 2;
  }
  for (int64_t v : a.volume)
    if (v < a.patch) return Fail(InvalidArgument("--volume extents must be >= the patch"));
  return RunUNet(a);
}
