// Google Benchmark micro-benchmarks of the CUDA backend's kernels at the benchmark
// U-Net's shapes (batch 1, 128^3): the 32->32 3x3x3 convolution (FP32 and FP16;
// compare with cuDNN's 229 TFLOP/s on H100/H200 for FP16 NDHWC), the k2s2 transposed
// convolution, InstanceNorm + LeakyReLU, and one window's Gaussian accumulation.
// Each iteration is the kernel's Run + a stream synchronisation, timed on the host.
// Without a usable GPU every benchmark reports "CUDA unavailable: <reason>".
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <random>

#include "itkit/cuda_accumulator.h"
#include "itkit/devices.h"
#include "itkit/op_table.h"

namespace {

using namespace itkit;

Tensor RandomHost(const Shape& shape, float scale, uint32_t seed) {
  Tensor t = Tensor::Allocate(DType::kF32, shape).value();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = d(rng);
  return t;
}

// One node on a CUDA backend with device inputs (constants visible at creation, as in
// a planned session), a device output and workspace.
class CudaNode {
 public:
  // channels_last: input 0 and the output are stored [N, ..., C] (the session's FP16
  // layout), so the kernel runs without layout conversions.
  Status Init(std::shared_ptr<Backend> backend, Node node, std::vector<Tensor> host, std::vector<bool> constant,
              bool channels_last = false) {
    backend_ = std::move(backend);
    node_ = std::move(node);
    host_ = std::move(host);
    std::vector<ValueDesc> descs(host_.size());
    std::vector<const ValueDesc*> ptrs;
    for (size_t i = 0; i < host_.size(); ++i) {
      descs[i] = ValueDesc{host_[i].dtype(), host_[i].shape(), constant[i] ? &host_[i] : nullptr};
      ptrs.push_back(&descs[i]);
    }
    ShapeContext sctx(node_, ptrs, 17);
    ITKIT_RETURN_IF_ERROR(InferNodeShapes(sctx));
    NodeSignature sig{&node_, descs, sctx.outputs(), 17};
    if (channels_last) sig.inputs[0].channels_last = sig.outputs[0].channels_last = true;
    std::string reason;
    if (!backend_->Supports(sig, &reason)) return Unsupported("CUDA does not run it: ", reason);
    ITKIT_ASSIGN_OR_RETURN(kernel_, backend_->CreateKernel(sig));
    for (const Tensor& h : host_) {
      ITKIT_ASSIGN_OR_RETURN(DeviceBuffer b, backend_->Allocate(h.bytes()));
      dev_.push_back(Tensor::Wrap(h.dtype(), h.shape(), b.owner, b.data, DeviceKind::kCuda));
      ITKIT_RETURN_IF_ERROR(backend_->CopyFromHost(h, dev_.back()));
    }
    const ValueDesc& o = sig.outputs[0];
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer ob, backend_->Allocate(ElementCount(o.shape) * DTypeSize(o.dtype)));
    out_ = Tensor::Wrap(o.dtype, o.shape, ob.owner, ob.data, DeviceKind::kCuda);
    if (kernel_->workspace_bytes()) {
      ITKIT_ASSIGN_OR_RETURN(ws_, backend_->Allocate(kernel_->workspace_bytes()));
    }
    for (const Tensor& t : dev_) ctx_.inputs.push_back(&t);
    ctx_.outputs = {&out_};
    ctx_.workspace = ws_.data;
    ctx_.workspace_bytes = kernel_->workspace_bytes();
    return Status::Ok();
  }
  Status Run() {
    ITKIT_RETURN_IF_ERROR(kernel_->Run(ctx_));
    return backend_->Synchronize();
  }

 private:
  std::shared_ptr<Backend> backend_;
  Node node_;
  std::vector<Tensor> host_, dev_;
  Tensor out_;
  DeviceBuffer ws_;
  std::unique_ptr<OpKernel> kernel_;
  KernelContext ctx_;
};

void Loop(benchmark::State& state, CudaNode& n, double flops, double bytes) {
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = n.Run();
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  if (flops > 0) state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  if (bytes > 0) state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// f16 copy of an f32 host tensor (random data: the layout does not matter).
Tensor Half(const Tensor& t) {
  Tensor h = Tensor::Allocate(DType::kF16, t.shape()).value();
  for (int64_t i = 0; i < t.size(); ++i) h.data<uint16_t>()[i] = FloatToHalf(t.data<float>()[i]);
  return h;
}

// Which convolution implementation a benchmark forces (its "path" argument).
enum ConvPath : int64_t { kDefault = 0, kConvolutionApi = 1, kOwnKernel = 2, kGraphApi = 3 };

std::shared_ptr<Backend> Backend(benchmark::State& state, bool fp16, bool tf32 = false, int64_t path = kDefault) {
  CudaBackendOptions o;
  o.fp16 = fp16;
  o.allow_tf32 = tf32;
  if (path == kConvolutionApi || path == kGraphApi) {
    o.own_kernels = CudaBackendOptions::OwnKernels::kLibrary;
    o.cudnn_graph = path == kGraphApi ? CudaBackendOptions::CudnnGraph::kFirst : CudaBackendOptions::CudnnGraph::kOff;
  } else if (path == kOwnKernel) {
    o.own_kernels = CudaBackendOptions::OwnKernels::kOwn;
  }
  auto b = CreateCudaBackend(o);
  if (!b.ok()) {
    state.SkipWithError(("CUDA unavailable: " + b.status().message()).c_str());
    return nullptr;
  }
  return *b;
}

Node MakeNode(const std::string& op, size_t inputs, const std::string& domain = "") {
  Node n;
  n.name = op;
  n.op_type = op;
  n.domain = domain;
  for (size_t i = 0; i < inputs; ++i) n.inputs.push_back("in" + std::to_string(i));
  n.outputs = {"out"};
  return n;
}

// Conv 3x3x3, pad 1, C -> C at edge^3 (state.range(0) = fp16, range(1) = C, range(2) = edge,
// range(3) = channels-last f16 data without bias: cuDNN alone, as in the FP16 session
// after drop_conv_bias_before_norm; range(4) = TF32 allowed for f32; range(5) = the
// path (ConvPath: 0 the defaults, every race included; 1 cuDNN's convolution API, its
// algorithm timed; 2 our kernel; 3 cuDNN's graph API, its heuristic's first usable
// engine); range(6) = batch).
void BM_Conv3x3x3(benchmark::State& state) {
  const bool fp16 = state.range(0) != 0;
  const int64_t C = state.range(1), E = state.range(2), N = state.range(6);
  const bool cl = state.range(3) != 0;
  auto backend = Backend(state, fp16, state.range(4) != 0, state.range(5));
  if (!backend) return;
  Node node = MakeNode("Conv", cl ? 2 : 3);
  node.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  CudaNode n;
  Status s = cl ? n.Init(backend, node, {Half(RandomHost({N, C, E, E, E}, 1.0f, 1)), Half(RandomHost({C, C, 3, 3, 3}, 0.05f, 2))},
                         {false, true}, true)
                : n.Init(backend, node,
                         {RandomHost({N, C, E, E, E}, 1.0f, 1), RandomHost({C, C, 3, 3, 3}, 0.05f, 2),
                          RandomHost({C}, 0.1f, 3)},
                         {false, true, true});
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  Loop(state, n, 2.0 * N * E * E * E * C * C * 27, 0);
}
BENCHMARK(BM_Conv3x3x3)->ArgNames({"fp16", "C", "edge", "cl", "tf32", "path", "batch"})
    ->Args({1, 32, 128, 0, 0, 0, 1})->Args({1, 32, 128, 1, 0, 0, 1})->Args({0, 32, 128, 0, 0, 0, 1})
    ->Args({0, 32, 128, 0, 1, 0, 1})->Args({1, 64, 64, 1, 0, 0, 1})->Args({1, 320, 8, 0, 0, 0, 1})
    ->Args({1, 320, 8, 1, 0, 0, 1})
    // The U-Net's 128^3 level at batch 4, each path on its own: cuDNN's convolution API,
    // our kernel, cuDNN's graph API (FP16 channels-last), then TF32 both ways.
    ->Args({1, 32, 128, 1, 0, 1, 4})->Args({1, 32, 128, 1, 0, 2, 4})->Args({1, 32, 128, 1, 0, 3, 4})
    ->Args({0, 32, 128, 0, 1, 1, 4})->Args({0, 32, 128, 0, 1, 3, 4})
    ->UseManualTime()->Unit(benchmark::kMillisecond);

// The U-Net's stem: 1 -> 32 channels, 3x3x3, at 128^3 x 4 on f16 channels-last data,
// range(0) = the path (as BM_Conv3x3x3's: 1 cuDNN's convolution API, 2 our stem
// kernel, 3 cuDNN's graph API).
void BM_ConvStem(benchmark::State& state) {
  auto backend = Backend(state, true, false, state.range(0));
  if (!backend) return;
  Node node = MakeNode("Conv", 2);
  node.attrs.SetInts("pads", {1, 1, 1, 1, 1, 1});
  CudaNode n;
  Status s = n.Init(backend, node, {Half(RandomHost({4, 1, 128, 128, 128}, 1.0f, 1)), Half(RandomHost({32, 1, 3, 3, 3}, 0.2f, 2))},
                    {false, true}, true);
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  Loop(state, n, 2.0 * 4 * 128 * 128 * 128 * 32 * 27, 0);
}
BENCHMARK(BM_ConvStem)->ArgNames({"path"})->Arg(1)->Arg(2)->Arg(3)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_ConvTranspose2x2x2(benchmark::State& state) {
  const bool fp16 = state.range(0) != 0;
  auto backend = Backend(state, fp16);
  if (!backend) return;
  Node node = MakeNode("ConvTranspose", 3);
  node.attrs.SetInts("kernel_shape", {2, 2, 2});
  node.attrs.SetInts("strides", {2, 2, 2});
  CudaNode n;
  Status s = n.Init(backend, node,
                    {RandomHost({1, 64, 64, 64, 64}, 1.0f, 1), RandomHost({64, 32, 2, 2, 2}, 0.1f, 2),
                     RandomHost({32}, 0.1f, 3)},
                    {false, true, true});
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  Loop(state, n, 2.0 * 64 * 64 * 64 * 64 * 32 * 8, 0);
}
BENCHMARK(BM_ConvTranspose2x2x2)->ArgNames({"fp16"})->Arg(1)->Arg(0)->UseManualTime()->Unit(benchmark::kMillisecond);

// range(0) = f16 data, range(1) = channels-last.
void BM_InstanceNormLeakyRelu(benchmark::State& state) {
  const bool half = state.range(0) != 0, cl = state.range(1) != 0;
  auto backend = Backend(state, half);
  if (!backend) return;
  const int64_t C = 32, E = 128;
  Node node = MakeNode("GroupNorm", 3, kItkitDomain);
  node.attrs.SetInt("num_groups", C);
  node.attrs.SetString("activation", "LeakyRelu");
  CudaNode n;
  Tensor x = RandomHost({1, C, E, E, E}, 1.0f, 1), g = RandomHost({C}, 1.0f, 2), b = RandomHost({C}, 0.1f, 3);
  if (half) {
    x = Half(x);
    g = Half(g);
    b = Half(b);
  }
  Status s = n.Init(backend, node, {x, g, b}, {false, true, true}, cl);
  if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  Loop(state, n, 0, 3.0 * C * E * E * E * (half ? 2 : 4));  // two reads and one write
}
BENCHMARK(BM_InstanceNormLeakyRelu)->ArgNames({"f16", "cl"})->Args({0, 0})->Args({1, 0})->Args({1, 1})
    ->UseManualTime()->Unit(benchmark::kMillisecond);

// One batch of 4 windows of 3-class logits (already on the GPU) into a 320x512x512 volume.
void BM_AccumulateWindows(benchmark::State& state) {
  auto backend = Backend(state, false);
  if (!backend) return;
  cuda::AccumulatorOptions o;
  o.num_classes = 3;
  o.volume = {320, 512, 512};
  o.patch = {128, 128, 128};
  auto acc = cuda::SlidingWindowAccumulator::Create(o, backend);
  if (!acc.ok()) return state.SkipWithError(acc.status().ToString().c_str());
  const Tensor host = RandomHost({4, 3, 128, 128, 128}, 3.0f, 4);
  auto buf = backend->Allocate(host.bytes());
  if (!buf.ok()) return state.SkipWithError(buf.status().ToString().c_str());
  Tensor dev = Tensor::Wrap(DType::kF32, host.shape(), buf->owner, buf->data, DeviceKind::kCuda);
  if (Status s = backend->CopyFromHost(host, dev); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  const std::vector<std::array<int64_t, 3>> origins = {{0, 0, 0}, {0, 0, 64}, {0, 64, 0}, {64, 64, 64}};
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = (*acc)->Accumulate(dev, origins);
    if (s.ok()) s = backend->Synchronize();
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // Per window voxel: 3 logits read, 3 sums and 1 weight sum read and written, 1 weight read.
  state.counters["GB/s"] = benchmark::Counter(4.0 * 128 * 128 * 128 * (3 + 8 + 1) * 4 / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AccumulateWindows)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
