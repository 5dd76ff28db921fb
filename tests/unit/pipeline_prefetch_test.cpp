// The window loop's helper-thread prefetch and its device-logits path, on the CPU:
// labels must be exactly those of the plain loop (whose labels the window tests check
// against hand-derived values).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>

#include "itkit/thread_pool.h"
#include "network.h"
#include "window_runner.h"

namespace itkit::pipeline {
namespace {

std::vector<float> Ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 37) % 101) / 100.0f;
  return v;
}

WindowRunSpec SpecFor(const std::vector<float>& volume, const Zyx& size) {
  WindowRunSpec spec;
  spec.input = volume.data();
  spec.size = size;
  spec.patch = {6, 8, 10};
  spec.stride = {3, 5, 4};
  spec.batch = 3;
  spec.label_voxels = static_cast<int64_t>(volume.size());
  spec.label_strides = {1, size[2], size[2] * size[1]};
  return spec;
}

std::vector<uint8_t> Labels(const WindowRunResult& r, size_t n) {
  return std::vector<uint8_t>(r.labels8.data(), r.labels8.data() + n);
}

TEST(PipelinePrefetch, SameLabelsWithAndWithoutPrefetch) {
  for (const Zyx size : {Zyx{11, 17, 23}, Zyx{4, 17, 23}}) {  // the second needs padding
    const std::vector<float> volume = Ramp(static_cast<size_t>(size[0] * size[1] * size[2]));
    auto net = CreateSyntheticNetwork(4);
    ThreadPool pool(2);
    WindowRunSpec spec = SpecFor(volume, size);
    spec.prefetch = false;
    auto plain = RunWindows(*net, spec, &pool, nullptr, nullptr);
    spec.prefetch = true;
    auto prefetched = RunWindows(*net, spec, &pool, nullptr, nullptr);
    ASSERT_TRUE(plain.ok() && prefetched.ok());
    EXPECT_EQ(Labels(*plain, volume.size()), Labels(*prefetched, volume.size()));
  }
}

// Out of memory at batch > 1: the prefetched batch (extracted for the old batch size)
// is dropped and the smaller batch extracted again.
class OneWindowNetwork final : public Network {
 public:
  std::string device() const override { return "cpu"; }
  Result<Tensor> Forward(const Tensor& in) override {
    if (in.dim(0) > 1) return OutOfMemory("pretend GPU out of memory");
    return synthetic_->Forward(in);
  }
  std::unique_ptr<Network> synthetic_ = CreateSyntheticNetwork(3);
};

TEST(PipelinePrefetch, ShrinkingTheBatchDropsThePrefetchedOne) {
  const Zyx size{11, 17, 23};
  const std::vector<float> volume = Ramp(static_cast<size_t>(size[0] * size[1] * size[2]));
  ThreadPool pool(2);
  WindowRunSpec spec = SpecFor(volume, size);
  spec.prefetch = true;
  OneWindowNetwork shrinking;
  auto a = RunWindows(shrinking, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->batch, 1);
  spec.prefetch = false;
  spec.batch = 1;
  auto net = CreateSyntheticNetwork(3);
  auto b = RunWindows(*net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(Labels(*a, volume.size()), Labels(*b, volume.size()));
}

// A "device" backend whose memory is host memory: enough for the window loop's
// device paths: batches uploaded by the prefetch thread, logits kept on the device
// (the accumulator cannot be made on it, so they are copied back to the host one).
class HostMemoryDevice final : public Backend {
 public:
  std::string_view name() const override { return "fake-gpu"; }
  DeviceKind device() const override { return DeviceKind::kCuda; }
  bool Supports(const NodeSignature&, std::string*) const override { return false; }
  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature&) override { return Unsupported("fake"); }
  Result<DeviceBuffer> Allocate(size_t bytes) override { return Backend::AllocateHost(bytes); }
  Result<DeviceBuffer> AllocateHost(size_t bytes) override {
    ++host_allocations;
    return Backend::AllocateHost(bytes);
  }
  Status CopyFromHost(const Tensor& host, Tensor& dev) override { return Copy(host, dev); }
  Status UploadAsync(const Tensor& host, Tensor& dev) override {
    ++uploads;
    return Copy(host, dev);
  }
  Status CopyToHost(const Tensor& dev, Tensor& host) override {
    ++downloads;
    return Copy(dev, host);
  }
  std::atomic<int> downloads{0}, uploads{0}, host_allocations{0};

 private:
  static Status Copy(const Tensor& from, Tensor& to) {
    if (from.bytes() != to.bytes()) return Internal("size mismatch");
    std::memcpy(to.raw(), from.raw(), from.bytes());
    return Status::Ok();
  }
};

class DeviceLogitsNetwork final : public Network {
 public:
  std::string device() const override { return "cuda"; }
  std::shared_ptr<Backend> device_backend() const override { return backend_; }
  Result<Tensor> Forward(const Tensor& in) override { return synthetic_->Forward(in); }
  bool accepts_device_input() const override { return true; }
  Result<Tensor> ForwardKeepingLogitsOnDevice(const Tensor& in) override {
    ++device_calls;
    batch_sizes.push_back(in.dim(0));
    if (in.device() != DeviceKind::kCuda) return InvalidArgument("expected the batch on the device");
    // The fake device's memory is host memory: the synthetic network can read it.
    ITKIT_ASSIGN_OR_RETURN(last_, synthetic_->Forward(Tensor::View(in.dtype(), in.shape(), const_cast<void*>(in.raw()))));
    return Tensor::View(last_.dtype(), last_.shape(), last_.raw(), DeviceKind::kCuda);
  }
  std::shared_ptr<HostMemoryDevice> backend_ = std::make_shared<HostMemoryDevice>();
  std::unique_ptr<Network> synthetic_ = CreateSyntheticNetwork(4);
  Tensor last_;
  int device_calls = 0;
  std::vector<int64_t> batch_sizes;
};

TEST(PipelinePrefetch, DeviceBatchesFullSizeAndLogitsReachAHostAccumulator) {
  const Zyx size{11, 17, 23};
  const std::vector<float> volume = Ramp(static_cast<size_t>(size[0] * size[1] * size[2]));
  ThreadPool pool(2);
  WindowRunSpec spec = SpecFor(volume, size);
  spec.batch = 4;  // 45 windows: the last batch has 1
  DeviceLogitsNetwork device_net;
  auto a = RunWindows(device_net, spec, &pool, nullptr, nullptr);  // prefetch on: a device network
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->accumulator->device(), "cpu");
  EXPECT_GT(device_net.device_calls, 0);
  EXPECT_EQ(device_net.backend_->downloads, device_net.device_calls);
  EXPECT_EQ(device_net.backend_->uploads, device_net.device_calls);  // batches arrive on the device
  // Two prefetch batches and one logits buffer for the downloads, however many batches ran.
  EXPECT_EQ(device_net.backend_->host_allocations, 3);
  // The last batch is short but runs at full size: one plan.
  EXPECT_NE(a->windows % spec.batch, 0) << a->windows << " windows";
  EXPECT_EQ(device_net.batch_sizes, std::vector<int64_t>(device_net.batch_sizes.size(), spec.batch));
  auto net = CreateSyntheticNetwork(4);
  spec.prefetch = false;
  auto b = RunWindows(*net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(Labels(*a, volume.size()), Labels(*b, volume.size()));
}

// force_cpu (accumulate_device cpu) with a device network: the network's plain
// Forward, whose session downloads the logits into page-locked memory it reuses
// (DeviceOutputs.DownloadsReuseTheirHostMemoryOnceTheCallerLetsGo); the window loop
// keeps nothing on the device and copies nothing itself.
TEST(PipelinePrefetch, HostAccumulationTakesTheLogitsFromThePlainForward) {
  const Zyx size{11, 17, 23};
  const std::vector<float> volume = Ramp(static_cast<size_t>(size[0] * size[1] * size[2]));
  ThreadPool pool(2);
  WindowRunSpec spec = SpecFor(volume, size);
  spec.batch = 4;
  spec.accumulate_device = "cpu";
  DeviceLogitsNetwork device_net;
  auto a = RunWindows(device_net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->accumulator->device(), "cpu");
  EXPECT_EQ(device_net.device_calls, 0);
  EXPECT_EQ(device_net.backend_->downloads, 0);
  EXPECT_EQ(device_net.backend_->host_allocations, 2);  // the two prefetch batches only
  auto net = CreateSyntheticNetwork(4);
  spec.prefetch = false;
  auto b = RunWindows(*net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(Labels(*a, volume.size()), Labels(*b, volume.size()));
}

}  // namespace
}  // namespace itkit::pipeline
