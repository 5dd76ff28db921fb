// The session's device-facing features, without a GPU: f16 storage between kernels
// (on the CPU's f16-storage backend), recorded step runs (CUDA Graphs' contract, on a
// fake device whose "recording" defers kernels like stream capture does), and graph
// outputs left on the device. Expected values are computed here by hand from the
// model's formula, not by the runtime.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "cpu/cpu_backend.h"
#include "itkit/devices.h"
#include "itkit/session.h"

namespace itkit {
namespace {

constexpr int64_t kIn = 2, kOut = 3, kSide = 4;
constexpr float kW[kOut][kIn] = {{0.5f, -1.25f}, {1.5f, 0.75f}, {-0.3f, 0.9f}};
constexpr float kB[kOut] = {0.1f, -0.2f, 0.3f};
constexpr float kScale = 0.7f;

Node MakeNode(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  Node n;
  n.name = op + "_" + out[0];
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

// y = Sigmoid(Relu(Conv1x1x1(x, W, B)) * scale), x: [1, 2, 4, 4, 4].
Model SmallNet() {
  Model m;
  Graph& g = m.graph;
  g.opsets[""] = 17;
  ValueInfo x;
  x.name = "x";
  x.dtype = DType::kF32;
  x.has_shape = true;
  x.dims = {Dim{1, ""}, Dim{kIn, ""}, Dim{kSide, ""}, Dim{kSide, ""}, Dim{kSide, ""}};
  g.inputs.push_back(x);
  std::vector<float> w(&kW[0][0], &kW[0][0] + kOut * kIn), b(kB, kB + kOut);
  g.initializers["W"] = *Tensor::FromVector<float>(w, {kOut, kIn, 1, 1, 1});
  g.initializers["B"] = *Tensor::FromVector<float>(b, {kOut});
  g.initializers["scale"] = *Tensor::FromVector<float>({kScale}, {1});
  g.nodes.push_back(MakeNode("Conv", {"x", "W", "B"}, {"c"}));
  g.nodes.push_back(MakeNode("Relu", {"c"}, {"r"}));
  g.nodes.push_back(MakeNode("Mul", {"r", "scale"}, {"m"}));
  g.nodes.push_back(MakeNode("Sigmoid", {"m"}, {"y"}));
  g.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  return m;
}

// Kernel steps after the passes: FusedConv (Conv + Relu), Mul, Sigmoid (the
// elementwise fusion, which would merge Mul and Sigmoid, is off in these tests).
constexpr int kSteps = 3;

SessionOptions WithBackend(std::shared_ptr<Backend> backend) {
  SessionOptions so;
  so.backends.push_back(std::move(backend));
  so.disabled_passes = {"fuse_elementwise"};
  return so;
}

Tensor Input(float seed) {
  Tensor x = *Tensor::Allocate(DType::kF32, {1, kIn, kSide, kSide, kSide});
  for (int64_t i = 0; i < x.size(); ++i) x.data<float>()[i] = std::sin(seed + 0.37f * static_cast<float>(i)) * 3.0f;
  return x;
}

std::vector<double> Expected(const Tensor& x) {
  const int64_t voxels = kSide * kSide * kSide;
  std::vector<double> y(static_cast<size_t>(kOut * voxels));
  for (int64_t k = 0; k < kOut; ++k)
    for (int64_t v = 0; v < voxels; ++v) {
      double c = kB[k];
      for (int64_t i = 0; i < kIn; ++i) c += double{kW[k][i]} * x.data<float>()[i * voxels + v];
      const double m = std::max(c, 0.0) * double{kScale};
      y[static_cast<size_t>(k * voxels + v)] = 1.0 / (1.0 + std::exp(-m));
    }
  return y;
}

double MaxError(const Tensor& got, const std::vector<double>& want) {
  double err = 0.0;
  for (int64_t i = 0; i < got.size(); ++i)
    err = std::max(err, std::fabs(got.data<float>()[i] - want[static_cast<size_t>(i)]));
  return err;
}

TEST(HalfStorage, ValuesBetweenKernelsAreF16AndOutputsStayF32) {
  auto session = Session::Create(SmallNet(), WithBackend(CreateHalfStorageCpuBackend()));
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const Tensor x = Input(0.5f);
  auto stats = (*session)->StatsFor({x.shape()});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  // c, r and m are stored f16 (x's f16 copy too); Sigmoid writes the graph output in f32.
  EXPECT_GE(stats->f16_values, 3u);
  EXPECT_EQ(stats->storage_casts, 2u);  // x -> f16 for the Conv, m -> f32 for the Sigmoid
  auto out = (*session)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ((*out)[0].dtype(), DType::kF32);
  const std::vector<double> want = Expected(x);
  const double err = MaxError((*out)[0], want);
  EXPECT_LT(err, 2e-3);   // f16 rounding of x, c and m: ~4e-3 before the sigmoid (slope <= 1/4)
  EXPECT_GT(err, 1e-6);   // and it did round: an f32 run is exact to ~1e-7 here

  auto plain = Session::Create(SmallNet());
  ASSERT_TRUE(plain.ok());
  auto exact = (*plain)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(exact.ok());
  EXPECT_LT(MaxError((*exact)[0], want), 1e-6);
}

TEST(ChannelsLast, ValuesBetweenKernelsAreChannelsLastAndOutputsRowMajor) {
  auto session = Session::Create(SmallNet(), WithBackend(CreateChannelsLastCpuBackend(false)));
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const Tensor x = Input(0.25f);
  auto stats = (*session)->StatsFor({x.shape()});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  // x is transposed for the convolution; c and m stay channels-last (Mul by a scalar is
  // layout-blind); Sigmoid writes the graph output, so m is transposed back for it.
  EXPECT_EQ(stats->layout_transposes, 2u);
  EXPECT_EQ(stats->channels_last_values, 3u);  // x's transpose, c, m
  EXPECT_EQ(stats->storage_casts, 0u);
  auto out = (*session)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6);  // layout changes nothing numerically
}

TEST(ChannelsLast, PerChannelBroadcastGoesRowMajorAndConvolutionWritesTheGraphOutput) {
  // Conv -> Add(per-channel [1,3,1,1,1]) -> Conv (graph output): the Add's broadcast
  // depends on the layout, so it runs row-major between two channels-last convolutions.
  Model m = SmallNet();
  Graph& g = m.graph;
  g.nodes.resize(1);  // Conv x -> c
  g.initializers["shift"] = *Tensor::FromVector<float>({0.5f, -1.0f, 2.0f}, {1, kOut, 1, 1, 1});
  g.initializers["W2"] = *Tensor::FromVector<float>({1.0f, -2.0f, 0.5f}, {1, kOut, 1, 1, 1});
  g.nodes.push_back(MakeNode("Add", {"c", "shift"}, {"a"}));
  g.nodes.push_back(MakeNode("Conv", {"a", "W2"}, {"y"}));
  auto session = Session::Create(m, WithBackend(CreateChannelsLastCpuBackend(false)));
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const Tensor x = Input(1.5f);
  auto stats = (*session)->StatsFor({x.shape()});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->layout_transposes, 3u);  // x -> CL, c -> row-major, a -> CL; y written row-major
  auto out = (*session)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  // By hand: y = sum_k W2[k] * (conv_k(x) + shift[k]).
  const float shift[kOut] = {0.5f, -1.0f, 2.0f}, w2[kOut] = {1.0f, -2.0f, 0.5f};
  const int64_t voxels = kSide * kSide * kSide;
  ASSERT_EQ((*out)[0].shape(), (Shape{1, 1, kSide, kSide, kSide}));
  double err = 0.0;
  for (int64_t v = 0; v < voxels; ++v) {
    double y = 0.0;
    for (int64_t k = 0; k < kOut; ++k) {
      double c = kB[k];
      for (int64_t i = 0; i < kIn; ++i) c += double{kW[k][i]} * x.data<float>()[i * voxels + v];
      y += w2[k] * (c + shift[k]);
    }
    err = std::max(err, std::fabs((*out)[0].data<float>()[v] - y));
  }
  EXPECT_LT(err, 1e-5);
}

// A channels-last backend that declines one op type, which then falls back to the CPU.
class DecliningBackend final : public Backend {
 public:
  DecliningBackend(std::shared_ptr<Backend> inner, std::string declined)
      : inner_(std::move(inner)), declined_(std::move(declined)) {}
  std::string_view name() const override { return "declining"; }
  DeviceKind device() const override { return inner_->device(); }
  bool prefers_channels_last() const override { return true; }
  bool Supports(const NodeSignature& sig, std::string* reason) const override {
    if (sig.node->op_type == declined_) return false;
    return inner_->Supports(sig, reason);
  }
  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    return inner_->CreateKernel(sig);
  }
  Result<DeviceBuffer> Allocate(size_t bytes) override { return inner_->Allocate(bytes); }
  Status CopyFromHost(const Tensor& host, Tensor& device) override { return inner_->CopyFromHost(host, device); }
  Status CopyToHost(const Tensor& device, Tensor& host) override { return inner_->CopyToHost(device, host); }

 private:
  std::shared_ptr<Backend> inner_;
  std::string declined_;
};

TEST(ChannelsLast, ValuesLeaveTheirBackendRowMajor) {
  // Sigmoid falls back to the CPU: m must be transposed back on the backend that holds
  // it, before it is copied, since the CPU's kernels read row-major data only.
  auto backend = std::make_shared<DecliningBackend>(CreateChannelsLastCpuBackend(false), "Sigmoid");
  auto session = Session::Create(SmallNet(), WithBackend(backend));
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const Tensor x = Input(2.0f);
  auto stats = (*session)->StatsFor({x.shape()});
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->layout_transposes, 2u);             // x -> channels-last, m -> row-major
  EXPECT_EQ(stats->steps_per_backend["cpu"], 2u);      // the copy of m and the Sigmoid
  EXPECT_EQ(stats->steps_per_backend["declining"], 5u);  // copy of x, transpose, FusedConv, Mul, transpose
  auto out = (*session)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6);
}

TEST(StepProfile, CountsEachStepByOpType) {
  SessionOptions so;
  so.disabled_passes = {"fuse_elementwise"};
  so.profile_steps = true;
  auto session = Session::Create(SmallNet(), so);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const Tensor x = Input(0.75f);
  for (int run = 0; run < 3; ++run) ASSERT_TRUE((*session)->Run(std::vector<Tensor>{x}).ok());
  const auto profile = (*session)->StepProfile();
  ASSERT_EQ(profile.size(), static_cast<size_t>(kSteps)) << "FusedConv, Mul, Sigmoid";
  for (const char* key : {"itkit.FusedConv", "Mul", "Sigmoid"}) {
    ASSERT_TRUE(profile.count(key)) << key;
    EXPECT_EQ(profile.at(key).count, 3u) << key;
    EXPECT_GE(profile.at(key).seconds, 0.0);
  }
  const auto by_step = (*session)->StepProfile(Session::ProfileBy::kStep);
  ASSERT_EQ(by_step.size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(by_step.count("Mul 'Mul_m'"), 1u);
  EXPECT_EQ(by_step.count("Sigmoid 'Sigmoid_y'"), 1u);
  // Cleared, then one more run: only that run is counted.
  (*session)->ClearStepProfile();
  EXPECT_TRUE((*session)->StepProfile().empty());
  ASSERT_TRUE((*session)->Run(std::vector<Tensor>{x}).ok());
  ASSERT_EQ((*session)->StepProfile().size(), static_cast<size_t>(kSteps));
  for (const auto& [key, t] : (*session)->StepProfile()) EXPECT_EQ(t.count, 1u) << key;
  EXPECT_EQ((*session)->StepProfile(Session::ProfileBy::kStep).size(), static_cast<size_t>(kSteps));
}

// A device that defers kernels while recording, as CUDA stream capture does, so a
// replay runs them on whatever the plan's fixed buffers then hold.
class FakeRecordingDevice;

class DeferredKernel final : public OpKernel {
 public:
  DeferredKernel(FakeRecordingDevice* device, std::unique_ptr<OpKernel> inner)
      : device_(device), inner_(std::move(inner)) {}
  size_t workspace_bytes() const override { return inner_->workspace_bytes(); }
  Status Run(KernelContext& ctx) override;

 private:
  FakeRecordingDevice* device_;
  std::shared_ptr<OpKernel> inner_;
};

class FakeRecording final : public StepRecording {
 public:
  FakeRecording(std::vector<std::function<Status()>> steps, int* replays) : steps_(std::move(steps)), replays_(replays) {}
  Status Replay() override {
    ++*replays_;
    for (auto& step : steps_) ITKIT_RETURN_IF_ERROR(step());
    return Status::Ok();
  }

 private:
  std::vector<std::function<Status()>> steps_;
  int* replays_;
};

class FakeRecordingDevice final : public Backend {
 public:
  std::string_view name() const override { return "fake-gpu"; }
  DeviceKind device() const override { return DeviceKind::kCuda; }
  bool Supports(const NodeSignature& sig, std::string* reason) const override { return cpu_->Supports(sig, reason); }
  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> inner, cpu_->CreateKernel(sig));
    return std::unique_ptr<OpKernel>(std::make_unique<DeferredKernel>(this, std::move(inner)));
  }
  Result<DeviceBuffer> Allocate(size_t bytes) override { return cpu_->Allocate(bytes); }
  Result<DeviceBuffer> AllocateHost(size_t bytes) override {
    ++host_allocations;
    return Backend::AllocateHost(bytes);
  }
  Status CopyFromHost(const Tensor& host, Tensor& dev) override { return Copy(host, dev); }
  Status CopyToHost(const Tensor& dev, Tensor& host) override { return Copy(dev, host); }
  Status CopyOnDevice(const Tensor& from, Tensor& to) override {
    ++device_copies;
    return Copy(from, to);
  }

  bool CanRecord() const override { return true; }
  Status BeginRecording() override {
    recording = true;
    pending.clear();
    return Status::Ok();
  }
  Result<std::unique_ptr<StepRecording>> EndRecording() override {
    recording = false;
    if (fail_recordings) return Unsupported("this fake refuses recordings");
    ++recordings;
    return std::unique_ptr<StepRecording>(std::make_unique<FakeRecording>(std::move(pending), &replays));
  }

  bool recording = false, fail_recordings = false;
  std::vector<std::function<Status()>> pending;
  int direct_runs = 0, recordings = 0, replays = 0, device_copies = 0, host_allocations = 0;

 private:
  static Status Copy(const Tensor& from, Tensor& to) {
    if (from.bytes() != to.bytes()) return Internal("size mismatch");
    std::memcpy(to.raw(), from.raw(), from.bytes());
    return Status::Ok();
  }
  std::shared_ptr<Backend> cpu_ = CreateCpuBackend();
};

Status DeferredKernel::Run(KernelContext& ctx) {
  if (!device_->recording) {
    ++device_->direct_runs;
    return inner_->Run(ctx);
  }
  // Keep tensor copies (same memory), not pointers into the session's per-run table.
  auto tensors = std::make_shared<std::vector<Tensor>>();
  for (const Tensor* t : ctx.inputs) tensors->push_back(t ? *t : Tensor());
  for (const Tensor* t : ctx.outputs) tensors->push_back(*t);
  const size_t num_inputs = ctx.inputs.size();
  KernelContext saved = ctx;
  std::shared_ptr<OpKernel> inner = inner_;
  device_->pending.push_back([tensors, num_inputs, saved, inner]() mutable {
    for (size_t i = 0; i < saved.inputs.size(); ++i)
      saved.inputs[i] = saved.inputs[i] ? &(*tensors)[i] : nullptr;
    for (size_t o = 0; o < saved.outputs.size(); ++o) saved.outputs[o] = &(*tensors)[num_inputs + o];
    return inner->Run(saved);
  });
  return Status::Ok();
}

TEST(RecordedSteps, RecordedOnTheSecondRunAndReplayedWithEachRunsInputs) {
  auto device = std::make_shared<FakeRecordingDevice>();
  SessionOptions so = WithBackend(device);
  auto session = Session::Create(SmallNet(), so);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  for (int run = 0; run < 4; ++run) {
    const Tensor x = Input(static_cast<float>(run));
    auto out = (*session)->Run(std::vector<Tensor>{x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6) << "run " << run;
    EXPECT_EQ(device->direct_runs, kSteps) << "run " << run;  // each kernel ran plainly once
    EXPECT_EQ(device->recordings, run >= 1 ? 1 : 0) << "run " << run;
    EXPECT_EQ(device->replays, run) << "run " << run;
  }
}

TEST(RecordedSteps, AFailedRecordingRunsTheStepsPlainly) {
  auto device = std::make_shared<FakeRecordingDevice>();
  device->fail_recordings = true;
  SessionOptions so = WithBackend(device);
  auto session = Session::Create(SmallNet(), so);
  ASSERT_TRUE(session.ok());
  for (int run = 0; run < 3; ++run) {
    const Tensor x = Input(10.0f + static_cast<float>(run));
    auto out = (*session)->Run(std::vector<Tensor>{x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6) << "run " << run;
  }
  EXPECT_EQ(device->replays, 0);
  EXPECT_EQ(device->direct_runs, 3 * kSteps);  // run 1's failed recording deferred, then ran plainly
}

TEST(RecordedSteps, SessionOptionTurnsRecordingOff) {
  auto device = std::make_shared<FakeRecordingDevice>();
  SessionOptions so = WithBackend(device);
  so.record_steps = false;
  auto session = Session::Create(SmallNet(), so);
  ASSERT_TRUE(session.ok());
  for (int run = 0; run < 3; ++run) ASSERT_TRUE((*session)->Run(std::vector<Tensor>{Input(1.0f)}).ok());
  EXPECT_EQ(device->recordings, 0);
  EXPECT_EQ(device->direct_runs, 3 * kSteps);
}

TEST(DeviceOutputs, StayOnTheDeviceWhenAsked) {
  auto device = std::make_shared<FakeRecordingDevice>();
  SessionOptions so = WithBackend(device);
  auto session = Session::Create(SmallNet(), so);
  ASSERT_TRUE(session.ok());
  const Tensor x = Input(2.0f);
  RunOptions keep;
  keep.outputs_on_device = true;
  auto on_device = (*session)->Run(std::vector<Tensor>{x}, keep);
  ASSERT_TRUE(on_device.ok()) << on_device.status().ToString();
  EXPECT_EQ((*on_device)[0].device(), DeviceKind::kCuda);
  EXPECT_LT(MaxError((*on_device)[0], Expected(x)), 1e-6);  // the fake's "device" memory is host memory
  auto on_host = (*session)->Run(std::vector<Tensor>{x});
  ASSERT_TRUE(on_host.ok());
  EXPECT_EQ((*on_host)[0].device(), DeviceKind::kCpu);
  EXPECT_LT(MaxError((*on_host)[0], Expected(x)), 1e-6);
}

TEST(DeviceOutputs, DownloadsReuseTheirHostMemoryOnceTheCallerLetsGo) {
  auto device = std::make_shared<FakeRecordingDevice>();
  auto session = Session::Create(SmallNet(), WithBackend(device));
  ASSERT_TRUE(session.ok());
  const void* first_memory = nullptr;
  for (int run = 0; run < 3; ++run) {  // each run's output dropped before the next
    const Tensor x = Input(static_cast<float>(run));
    auto out = (*session)->Run(std::vector<Tensor>{x});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6);
    if (run == 0) first_memory = (*out)[0].raw();
    EXPECT_EQ((*out)[0].raw(), first_memory);
  }
  EXPECT_EQ(device->host_allocations, 1);
  // A caller that keeps an output gets fresh memory next time, and its values stay.
  const Tensor a = Input(5.0f), b = Input(6.0f);
  auto kept = (*session)->Run(std::vector<Tensor>{a});
  ASSERT_TRUE(kept.ok());
  auto next = (*session)->Run(std::vector<Tensor>{b});
  ASSERT_TRUE(next.ok());
  EXPECT_NE((*kept)[0].raw(), (*next)[0].raw());
  EXPECT_EQ(device->host_allocations, 2);
  EXPECT_LT(MaxError((*kept)[0], Expected(a)), 1e-6);
  EXPECT_LT(MaxError((*next)[0], Expected(b)), 1e-6);
  // Holding one output while running the next (double buffering) allocates nothing more.
  const void* second_memory = (*next)[0].raw();
  next = Result<std::vector<Tensor>>(std::vector<Tensor>{});
  for (int run = 0; run < 3; ++run) {
    auto again = (*session)->Run(std::vector<Tensor>{b});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ((*again)[0].raw(), second_memory);
    EXPECT_LT(MaxError((*again)[0], Expected(b)), 1e-6);
  }
  EXPECT_EQ(device->host_allocations, 2);
  EXPECT_LT(MaxError((*kept)[0], Expected(a)), 1e-6);  // untouched throughout
}

TEST(DeviceInputs, AreStagedIntoThePlanSoReplaysSeeEachBuffer) {
  // Inputs handed over in "device" memory (the fake's device memory is host memory),
  // alternating between two buffers as the pipeline's double buffering does: each run
  // copies its buffer into the plan's arena, so the recording made on run 2 reads the
  // right data on runs 3 and 4.
  auto device = std::make_shared<FakeRecordingDevice>();
  auto session = Session::Create(SmallNet(), WithBackend(device));
  ASSERT_TRUE(session.ok());
  Tensor buffers[2] = {Input(0.0f), Input(0.0f)};
  for (int run = 0; run < 4; ++run) {
    Tensor& host = buffers[run % 2];
    const Tensor x = Input(3.0f + static_cast<float>(run));
    std::memcpy(host.raw(), x.raw(), x.bytes());
    const Tensor on_device = Tensor::View(DType::kF32, host.shape(), host.raw(), DeviceKind::kCuda);
    auto out = (*session)->Run(std::vector<Tensor>{on_device});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ((*out)[0].device(), DeviceKind::kCpu);
    EXPECT_LT(MaxError((*out)[0], Expected(x)), 1e-6) << "run " << run;
  }
  EXPECT_EQ(device->device_copies, 4);  // one stage-in per run
  EXPECT_EQ(device->replays, 3);  // recorded (and replayed) on run 2, replayed on runs 3-4
}

TEST(DeviceInputs, WithoutABackendForThatDeviceAreAnError) {
  auto session = Session::Create(SmallNet());
  ASSERT_TRUE(session.ok());
  Tensor host = Input(1.0f);
  const Tensor on_device = Tensor::View(DType::kF32, host.shape(), host.raw(), DeviceKind::kCuda);
  auto out = (*session)->Run(std::vector<Tensor>{on_device});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("graph input 'x'"), std::string::npos) << out.status().message();
}

// A device kernel that keeps its own copy of a constant (as a convolution prepacks its
// filter) and says so: the planner neither uploads that constant nor passes it.
class PrepackedMulKernel final : public OpKernel {
 public:
  explicit PrepackedMulKernel(std::vector<float> factor) : factor_(std::move(factor)) {}
  bool reads_input_at_run(size_t input) const override { return input != 1; }
  Status Run(KernelContext& ctx) override {
    if (ctx.inputs[1] != nullptr) return Internal("the prepacked constant was passed");
    const float* x = ctx.inputs[0]->data<float>();
    float* y = ctx.outputs[0]->data<float>();
    for (int64_t i = 0; i < ctx.outputs[0]->size(); ++i) y[i] = x[i] * factor_[static_cast<size_t>(i) % factor_.size()];
    return Status::Ok();
  }

 private:
  std::vector<float> factor_;
};

class PrepackingDevice final : public Backend {
 public:
  std::string_view name() const override { return "fake-prepack"; }
  DeviceKind device() const override { return DeviceKind::kCuda; }
  bool Supports(const NodeSignature& sig, std::string*) const override {
    return sig.node->op_type == "Mul" && sig.inputs.size() == 2 && sig.inputs[1].constant != nullptr &&
           sig.inputs[1].shape == sig.inputs[0].shape;
  }
  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    const Tensor& c = *sig.inputs[1].constant;
    return std::unique_ptr<OpKernel>(
        std::make_unique<PrepackedMulKernel>(std::vector<float>(c.data<float>(), c.data<float>() + c.size())));
  }
  Result<DeviceBuffer> Allocate(size_t bytes) override { return cpu_->Allocate(bytes); }
  Status CopyFromHost(const Tensor& host, Tensor& dev) override {
    uploaded_bytes += host.bytes();
    std::memcpy(dev.raw(), host.raw(), host.bytes());
    return Status::Ok();
  }
  Status CopyToHost(const Tensor& dev, Tensor& host) override {
    std::memcpy(host.raw(), dev.raw(), dev.bytes());
    return Status::Ok();
  }
  size_t uploaded_bytes = 0;

 private:
  std::shared_ptr<Backend> cpu_ = CreateCpuBackend();
};

TEST(PrepackedConstants, AreNotUploadedForTheKernelThatKeepsThem) {
  Model m;
  m.graph.opsets[""] = 17;
  ValueInfo x;
  x.name = "x";
  x.dtype = DType::kF32;
  x.has_shape = true;
  x.dims = {Dim{1, ""}, Dim{16, ""}};
  m.graph.inputs.push_back(x);
  std::vector<float> factor(16);
  for (int i = 0; i < 16; ++i) factor[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  m.graph.initializers["f"] = *Tensor::FromVector(factor, {1, 16});
  Node mul;
  mul.name = "mul";
  mul.op_type = "Mul";
  mul.inputs = {"x", "f"};
  mul.outputs = {"y"};
  m.graph.nodes.push_back(mul);
  m.graph.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  auto device = std::make_shared<PrepackingDevice>();
  auto s = Session::Create(m, WithBackend(device));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  std::vector<float> xv(16, 2.0f);
  auto out = (*s)->Run(std::vector<Tensor>{*Tensor::FromVector(xv, {1, 16})});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ((*out)[0].data<float>()[i], 2.0f * static_cast<float>(i + 1));
  EXPECT_EQ(device->uploaded_bytes, 16u * sizeof(float)) << "only x goes to the device, not the constant";
}

}  // namespace
}  // namespace itkit
