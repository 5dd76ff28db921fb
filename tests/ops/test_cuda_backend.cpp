// The CUDA backend end to end, in the GPU build (itkit_backend_ops_test, skipped without
// a GPU) and on the host emulator (itkit_cuda_emu_test, tests/cuda_emu): a small U-Net
// block through a Session (placement, copies, CUDA graph recording and replay), the
// sliding-window accumulators and the window gather, against results computed here on
// the host.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <random>

#include "op_case_maker.h"
#include "itkit/devices.h"
#include "itkit/session.h"
#if ITKIT_HAVE_CUDA
#include "itkit/cuda_accumulator.h"
#include "itkit/cuda_window_gather.h"
#endif

namespace itkit::test::ops {
namespace {

// ---- a small U-Net block through the Session: placement, copies, uploads, fusions ------

Node GraphNode(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  Node n;
  n.name = out[0] + "_node";
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

Model UNetBlockModel() {
  std::mt19937 rng(7);
  Model m;
  m.source = "<unet block>";
  Graph& g = m.graph;
  g.opsets[""] = 17;
  ValueInfo in;
  in.name = "x";
  in.dtype = DType::kF32;
  in.has_shape = true;
  for (int64_t d : {2, 2, 16, 16, 16}) in.dims.push_back(Dim{d, ""});
  g.inputs.push_back(in);
  auto conv = [&](const std::string& x, const std::string& y, int64_t cin, int64_t cout, int64_t k, int64_t s,
                  int64_t p) {
    g.initializers[y + "_w"] = RandomF32({cout, cin, k, k, k}, rng, 1.0f / std::sqrt(static_cast<float>(cin * k * k * k)));
    g.initializers[y + "_b"] = RandomF32({cout}, rng, 0.2f);
    Node n = GraphNode("Conv", {x, y + "_w", y + "_b"}, {y});
    n.attrs.SetInts("kernel_shape", {k, k, k});
    n.attrs.SetInts("strides", {s, s, s});
    n.attrs.SetInts("pads", {p, p, p, p, p, p});
    g.nodes.push_back(n);
  };
  auto norm_act = [&](const std::string& x, const std::string& y, int64_t c) {
    g.initializers[y + "_s"] = RandomF32({c}, rng);
    g.initializers[y + "_t"] = RandomF32({c}, rng, 0.2f);
    g.nodes.push_back(GraphNode("InstanceNormalization", {x, y + "_s", y + "_t"}, {y + "_n"}));
    Node act = GraphNode("LeakyRelu", {y + "_n"}, {y});
    act.attrs.SetFloat("alpha", 0.01f);
    g.nodes.push_back(act);
  };
  conv("x", "c1", 2, 8, 3, 1, 1);
  norm_act("c1", "a1", 8);
  conv("a1", "c2", 8, 16, 3, 2, 1);
  norm_act("c2", "a2", 16);
  g.initializers["up_w"] = RandomF32({16, 8, 2, 2, 2}, rng, 0.25f);
  g.initializers["up_b"] = RandomF32({8}, rng, 0.2f);
  Node up = GraphNode("ConvTranspose", {"a2", "up_w", "up_b"}, {"up"});
  up.attrs.SetInts("kernel_shape", {2, 2, 2});
  up.attrs.SetInts("strides", {2, 2, 2});
  g.nodes.push_back(up);
  Node cat = GraphNode("Concat", {"up", "a1"}, {"cat"});
  cat.attrs.SetInt("axis", 1);
  g.nodes.push_back(cat);
  conv("cat", "logits", 16, 3, 1, 1, 0);
  Node sm = GraphNode("Softmax", {"logits"}, {"prob"});
  sm.attrs.SetInt("axis", 1);
  g.nodes.push_back(sm);
  Node am = GraphNode("ArgMax", {"logits"}, {"label"});
  am.attrs.SetInt("axis", 1);
  am.attrs.SetInt("keepdims", 0);
  g.nodes.push_back(am);
  g.outputs.push_back(ValueInfo{"prob", DType::kF32, false, {}});
  g.outputs.push_back(ValueInfo{"label", DType::kI64, false, {}});
  return m;
}

TEST(CudaSession, UNetBlockMatchesCpu) {
  for (bool fp16 : {false, true}) {
    CudaBackendOptions o;
    o.fp16 = fp16;
    auto cuda = CreateCudaBackend(o);
    if (!cuda.ok()) GTEST_SKIP() << "CUDA unavailable: " << cuda.status().message();
    std::mt19937 rng(11);
    auto cpu_session = Session::Create(UNetBlockModel());
    ASSERT_TRUE(cpu_session.ok()) << cpu_session.status().ToString();
    SessionOptions so;
    so.backends.push_back(*cuda);
    auto gpu_session = Session::Create(UNetBlockModel(), so);
    ASSERT_TRUE(gpu_session.ok()) << gpu_session.status().ToString();
    // Run 1 plans, run 2 records the GPU steps as a CUDA graph, runs 3-4 replay it:
    // each with new input data, which a stale recording would not see.
    Tensor x;
    for (int run = 0; run < 4; ++run) {
      x = RandomF32({2, 2, 16, 16, 16}, rng);
      auto expected = (*cpu_session)->Run(std::vector<Tensor>{x});
      ASSERT_TRUE(expected.ok()) << expected.status().ToString();
      auto got = (*gpu_session)->Run(std::vector<Tensor>{x});
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      const Tensor& p = (*got)[0];
      const Tensor& q = (*expected)[0];
      ASSERT_EQ(p.shape(), q.shape());
      double d2 = 0, r2 = 0;
      for (int64_t i = 0; i < q.size(); ++i) {
        ASSERT_TRUE(std::isfinite(p.data<float>()[i])) << "element " << i;
        const double d = p.data<float>()[i] - q.data<float>()[i];
        d2 += d * d;
        r2 += static_cast<double>(q.data<float>()[i]) * q.data<float>()[i];
      }
      EXPECT_LE(std::sqrt(d2 / r2), fp16 ? 1e-2 : 1e-4) << (fp16 ? "fp16" : "fp32") << " run " << run;
      int64_t differ = 0;
      for (int64_t i = 0; i < (*expected)[1].size(); ++i)
        differ += (*got)[1].data<int64_t>()[i] != (*expected)[1].data<int64_t>()[i];
      EXPECT_LE(static_cast<double>(differ) / static_cast<double>((*expected)[1].size()), fp16 ? 1e-2 : 1e-3)
          << " run " << run;
    }
    // Outputs kept on the GPU hold the same values.
    RunOptions keep;
    keep.outputs_on_device = true;
    auto on_host = (*gpu_session)->Run(std::vector<Tensor>{x});
    auto on_device = (*gpu_session)->Run(std::vector<Tensor>{x}, keep);
    ASSERT_TRUE(on_host.ok() && on_device.ok()) << (on_device.ok() ? on_host.status() : on_device.status()).ToString();
    ASSERT_EQ((*on_device)[0].device(), DeviceKind::kCuda);
    Tensor back = Tensor::Allocate((*on_device)[0].dtype(), (*on_device)[0].shape()).value();
    ASSERT_TRUE((*cuda)->CopyToHost((*on_device)[0], back).ok());
    for (int64_t i = 0; i < back.size(); ++i)
      ASSERT_EQ(back.data<float>()[i], (*on_host)[0].data<float>()[i]) << "element " << i;
    auto stats = (*gpu_session)->StatsFor({x.shape()});
    ASSERT_TRUE(stats.ok());
#if defined(ITKIT_CUDA_EMU)
    // The emulator has no cuDNN: the convolutions run on the CPU, the rest on the GPU
    // backend, each GPU step between two CPU ones (so no value stays in f16).
    EXPECT_GE(stats->steps_per_backend["cuda"], 5u) << "norms, activations, concat, softmax, argmax";
#else
    EXPECT_GE(stats->steps_per_backend["cuda"], 8u) << "the block's ops should all run on the GPU";
    if (fp16) {
      EXPECT_GT(stats->f16_values, 4u) << "FP16 mode keeps values between GPU kernels in f16";
    }
#endif
  }
}

#if ITKIT_HAVE_CUDA
// ---- sliding-window accumulation ---------------------------------------------------------

TEST(CudaAccumulator, MatchesHostBlending) {
  auto backend = CreateCudaBackend(CudaBackendOptions{});
  if (!backend.ok()) GTEST_SKIP() << "CUDA unavailable: " << backend.status().message();
  cuda::AccumulatorOptions o;
  o.num_classes = 4;
  o.volume = {20, 24, 28};
  o.patch = {8, 12, 16};
  auto acc = cuda::SlidingWindowAccumulator::Create(o, *backend);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  const std::vector<float> w = cuda::DefaultWindowWeights(o.patch, o.blend, o.sigma_scale);
  const int64_t V = 20 * 24 * 28, P = 8 * 12 * 16;
  std::vector<double> sums(static_cast<size_t>(4 * V), 0.0), wsum(static_cast<size_t>(V), 0.0);
  std::mt19937 rng(3);
  // Overlapping windows, some reaching outside the volume; batches of 2 (f32) and 1 (f16, on the device).
  const std::vector<std::array<int64_t, 3>> origins = {{0, 0, 0},   {4, 6, 8},   {12, 12, 12}, {-3, 15, 20},
                                                       {10, -5, 0}, {14, 18, 14}, {6, 0, 12},  {0, 12, 0}};
  for (size_t k = 0; k < origins.size(); k += 2) {
    const bool device_half = k == 6;
    Tensor logits = RandomF32({2, 4, 8, 12, 16}, rng, 3.0f);
    for (size_t b = 0; b < 2; ++b) {
      const auto& org = origins[k + b];
      for (int64_t p = 0; p < P; ++p) {
        const int64_t z = org[0] + p / (12 * 16), y = org[1] + (p / 16) % 12, xx = org[2] + p % 16;
        if (z < 0 || z >= 20 || y < 0 || y >= 24 || xx < 0 || xx >= 28) continue;
        const int64_t v = (z * 24 + y) * 28 + xx;
        for (int64_t c = 0; c < 4; ++c) {
          float value = logits.data<float>()[(static_cast<int64_t>(b) * 4 + c) * P + p];
          if (device_half) value = HalfToFloat(FloatToHalf(value));
          sums[static_cast<size_t>(c * V + v)] += w[static_cast<size_t>(p)] * value;
        }
        wsum[static_cast<size_t>(v)] += w[static_cast<size_t>(p)];
      }
    }
    std::vector<std::array<int64_t, 3>> batch = {origins[k], origins[k + 1]};
    if (device_half) {
      Tensor half = Tensor::Allocate(DType::kF16, logits.shape()).value();
      for (int64_t i = 0; i < logits.size(); ++i) half.data<uint16_t>()[i] = FloatToHalf(logits.data<float>()[i]);
      auto buf = (*backend)->Allocate(half.bytes());
      ASSERT_TRUE(buf.ok());
      Tensor dev = Tensor::Wrap(DType::kF16, half.shape(), buf->owner, buf->data, DeviceKind::kCuda);
      ASSERT_TRUE((*backend)->CopyFromHost(half, dev).ok());
      ASSERT_TRUE((*acc)->Accumulate(dev, batch).ok());
    } else {
      ASSERT_TRUE((*acc)->Accumulate(logits, batch).ok());
    }
  }
  auto labels = (*acc)->ArgMax(DType::kU8);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  auto mean = (*acc)->AveragedLogits();
  ASSERT_TRUE(mean.ok()) << mean.status().ToString();
  int64_t differ = 0;
  double d2 = 0, r2 = 0;
  for (int64_t v = 0; v < V; ++v) {
    int64_t best = 0;
    for (int64_t c = 1; c < 4; ++c)
      if (sums[static_cast<size_t>(c * V + v)] > sums[static_cast<size_t>(best * V + v)]) best = c;
    differ += labels->data<uint8_t>()[v] != best;
    for (int64_t c = 0; c < 4; ++c) {
      const double ref = wsum[static_cast<size_t>(v)] > 0 ? sums[static_cast<size_t>(c * V + v)] / wsum[static_cast<size_t>(v)] : 0;
      const double d = mean->data<float>()[c * V + v] - ref;
      d2 += d * d;
      r2 += ref * ref;
    }
  }
  EXPECT_LE(static_cast<double>(differ) / static_cast<double>(V), 1e-3);
  EXPECT_LE(std::sqrt(d2 / std::max(r2, 1e-30)), 1e-5);
  ASSERT_TRUE((*acc)->Reset().ok());
  auto cleared = (*acc)->ArgMax(DType::kI32);
  ASSERT_TRUE(cleared.ok());
  for (int64_t v = 0; v < V; ++v) ASSERT_EQ(cleared->data<int32_t>()[v], 0);
}

// Labels only: a patch-deep ring of slices on the GPU, windows in z order (batches of 3
// that span two z rows, windows sticking out of the volume), against the argmax of
// whole-volume double sums; less GPU memory than keeping averages; order enforced.
TEST(CudaAccumulator, LabelsOnlyRingGivesTheWholeVolumeLabels) {
  auto backend = CreateCudaBackend(CudaBackendOptions{});
  if (!backend.ok()) GTEST_SKIP() << "CUDA unavailable: " << backend.status().message();
  cuda::AccumulatorOptions o;
  o.num_classes = 3;
  o.volume = {30, 20, 18};
  o.patch = {8, 12, 10};
  o.keep_averages = false;
  o.label_dtype = DType::kI32;
  auto acc = cuda::SlidingWindowAccumulator::Create(o, *backend);
  ASSERT_TRUE(acc.ok()) << acc.status().ToString();
  cuda::AccumulatorOptions full = o;
  full.keep_averages = true;
  auto whole_acc = cuda::SlidingWindowAccumulator::Create(full, *backend);
  ASSERT_TRUE(whole_acc.ok());
  EXPECT_LT((*acc)->device_bytes(), (*whole_acc)->device_bytes());
  const std::vector<float> w = cuda::DefaultWindowWeights(o.patch, o.blend, o.sigma_scale);
  const int64_t D = 30, H = 20, W = 18, C = 3, P = 8 * 12 * 10;
  std::vector<std::array<int64_t, 3>> origins;
  for (int64_t z : {-2, 4, 10, 16, 22})
    for (int64_t y : {0, 8})
      for (int64_t x : {0, 8, 12}) origins.push_back({z, y, x});
  std::vector<double> sums(static_cast<size_t>(C * D * H * W), 0.0);
  std::mt19937 rng(5);
  for (size_t k = 0; k < origins.size(); k += 3) {
    Tensor logits = RandomF32({3, C, 8, 12, 10}, rng, 3.0f);
    for (size_t b = 0; b < 3; ++b) {
      const auto& org = origins[k + b];
      for (int64_t p = 0; p < P; ++p) {
        const int64_t z = org[0] + p / 120, y = org[1] + (p / 10) % 12, xx = org[2] + p % 10;
        if (z < 0 || z >= D || y >= H || xx >= W) continue;
        for (int64_t c = 0; c < C; ++c)
          sums[static_cast<size_t>((c * D + z) * H * W + y * W + xx)] +=
              w[static_cast<size_t>(p)] * logits.data<float>()[(static_cast<int64_t>(b) * C + c) * P + p];
      }
    }
    ASSERT_TRUE((*acc)->Accumulate(logits, {origins[k], origins[k + 1], origins[k + 2]}).ok());
  }
  EXPECT_EQ((*acc)->ArgMax(DType::kU8).status().code(), StatusCode::kInvalidArgument);  // set up as i32
  auto labels = (*acc)->ArgMax(DType::kI32);
  ASSERT_TRUE(labels.ok()) << labels.status().ToString();
  int64_t differ = 0;
  for (int64_t v = 0; v < D * H * W; ++v) {
    int best = 0;
    for (int c = 1; c < C; ++c)
      if (sums[static_cast<size_t>(c * D * H * W + v)] > sums[static_cast<size_t>(best * D * H * W + v)]) best = c;
    differ += labels->data<int32_t>()[v] != best;
  }
  EXPECT_LE(static_cast<double>(differ) / static_cast<double>(D * H * W), 1e-3);
  EXPECT_EQ((*acc)->AveragedLogits().status().code(), StatusCode::kInvalidArgument);
  // Windows out of z order are refused, not mis-added.
  ASSERT_TRUE((*acc)->Reset().ok());
  Tensor one = RandomF32({1, C, 8, 12, 10}, rng, 1.0f);
  ASSERT_TRUE((*acc)->Accumulate(one, {{12, 0, 0}}).ok());
  EXPECT_EQ((*acc)->Accumulate(one, {{3, 0, 0}}).code(), StatusCode::kInvalidArgument);
  // A batch out of order is refused as a whole, before anything is added or finalised:
  // afterwards a window at slice 4 is still welcome.
  ASSERT_TRUE((*acc)->Reset().ok());
  Tensor two = RandomF32({2, C, 8, 12, 10}, rng, 1.0f);
  EXPECT_EQ((*acc)->Accumulate(two, {{10, 0, 0}, {4, 0, 0}}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*acc)->Accumulate(one, {{4, 0, 0}}).ok());
}

// Windows cut on the GPU (f32 [C, D, H, W] and f16 [D, H, W]) against crops written
// out by hand: windows inside, reaching out of every face, and one past the origins
// that must keep its sentinel.
TEST(CudaWindowGather, MatchesTheHostCrop) {
  auto backend = CreateCudaBackend(CudaBackendOptions{});
  if (!backend.ok()) GTEST_SKIP() << "CUDA unavailable: " << backend.status().message();
  std::mt19937 rng(11);
  const std::vector<std::array<int64_t, 3>> origins = {{0, 0, 0}, {3, 4, 5}, {-2, 7, -3}, {6, -1, 9}};
  for (const bool half : {false, true}) {
    const int64_t C = half ? 1 : 2, D = 9, H = 10, W = 11, pz = 4, py = 5, px = 6, B = 5;
    const Shape vshape = half ? Shape{D, H, W} : Shape{C, D, H, W};
    const Tensor volume = RandomF32(vshape, rng);
    const float sentinel = 1234.0f, outside = -7.0f;
    std::vector<float> expected(static_cast<size_t>(B * C * pz * py * px), sentinel);
    size_t i = 0;
    for (int64_t b = 0; b < static_cast<int64_t>(origins.size()); ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t z = 0; z < pz; ++z)
          for (int64_t y = 0; y < py; ++y)
            for (int64_t x = 0; x < px; ++x, ++i) {
              const int64_t vz = origins[b][0] + z, vy = origins[b][1] + y, vx = origins[b][2] + x;
              const bool in = vz >= 0 && vz < D && vy >= 0 && vy < H && vx >= 0 && vx < W;
              expected[i] = in ? volume.data<float>()[((c * D + vz) * H + vy) * W + vx] : outside;
            }
    const DType dt = half ? DType::kF16 : DType::kF32;
    auto to_device = [&](const std::vector<float>& values, const Shape& shape) {
      Tensor host = Tensor::Allocate(dt, shape).value();
      for (size_t k = 0; k < values.size(); ++k) {
        if (half) {
          host.data<uint16_t>()[k] = FloatToHalf(values[k]);
        } else {
          host.data<float>()[k] = values[k];
        }
      }
      auto buf = (*backend)->Allocate(host.bytes());
      EXPECT_TRUE(buf.ok());
      Tensor dev = Tensor::Wrap(dt, shape, buf->owner, buf->data, DeviceKind::kCuda);
      EXPECT_TRUE((*backend)->CopyFromHost(host, dev).ok());
      return dev;
    };
    const std::vector<float> vvalues(volume.data<float>(), volume.data<float>() + volume.size());
    Tensor vdev = to_device(vvalues, vshape);
    Tensor batch = to_device(std::vector<float>(expected.size(), sentinel), {B, C, pz, py, px});
    ASSERT_TRUE(cuda::GatherWindows(**backend, vdev, origins, batch, outside).ok());
    Tensor got = Tensor::Allocate(dt, batch.shape()).value();
    ASSERT_TRUE((*backend)->CopyToHost(batch, got).ok());
    for (size_t k = 0; k < expected.size(); ++k) {
      const float g = half ? HalfToFloat(got.data<uint16_t>()[k]) : got.data<float>()[k];
      const float e = half ? HalfToFloat(FloatToHalf(expected[k])) : expected[k];
      ASSERT_EQ(g, e) << (half ? "f16" : "f32") << " element " << k;
    }
    // Misuse is an error, not a launch.
    EXPECT_EQ(cuda::GatherWindows(**backend, vdev, std::vector<std::array<int64_t, 3>>(6), batch).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(cuda::GatherWindows(**backend, volume, origins, batch).code(), StatusCode::kInvalidArgument);
  }
}
#endif  // ITKIT_HAVE_CUDA

}  // namespace
}  // namespace itkit::test::ops
