#include "window_runner.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <future>

#include "volume.h"

namespace itkit::pipeline {
namespace {

// Copies windows into the (n, channels, patch) batch, in parallel over rows of planes.
// `blocks`: the volume's channels are in that block layout (each window covers whole
// blocks, read as contiguous runs); else z, y, x.
void ExtractBatch(const float* volume, int channels, const Zyx& dims, const BlockGrid* blocks,
                  const std::vector<Zyx>& starts, const Zyx& patch, float* dst, ThreadPool* pool) {
  const int64_t planes = static_cast<int64_t>(starts.size()) * channels * patch[0];
  ParallelFor(pool, planes, 4, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int64_t z = p % patch[0];
      const int64_t c = (p / patch[0]) % channels;
      const Zyx& s = starts[static_cast<size_t>(p / (patch[0] * channels))];
      float* d = dst + p * patch[1] * patch[2];
      if (blocks != nullptr) {
        const float* channel = volume + c * blocks->volume();
        const auto [ys0, ys1] = blocks->Range(0, s[1], s[1] + patch[1]);
        const auto [xs0, xs1] = blocks->Range(1, s[2], s[2] + patch[2]);
        for (size_t ys = ys0; ys < ys1; ++ys)
          for (size_t xs = xs0; xs < xs1; ++xs) {
            const int64_t h = blocks->height(ys), w = blocks->width(xs);
            const float* src = channel + blocks->offset(ys, xs) + (s[0] + z) * h * w;
            float* row = d + (blocks->y0(ys) - s[1]) * patch[2] + blocks->x0(xs) - s[2];
            for (int64_t y = 0; y < h; ++y, src += w, row += patch[2])
              std::memcpy(row, src, static_cast<size_t>(w) * sizeof(float));
          }
        continue;
      }
      for (int64_t y = 0; y < patch[1]; ++y) {
        const float* src = volume + ((c * dims[0] + s[0] + z) * dims[1] + s[1] + y) * dims[2] + s[2];
        // Rows are a grid row apart, which the hardware prefetcher does not follow.
        if (y + 4 < patch[1])
          for (int64_t x = 0; x < patch[2]; x += 16) __builtin_prefetch(src + 4 * dims[2] + x, 0, 3);
        std::memcpy(d + y * patch[2], src, static_cast<size_t>(patch[2]) * sizeof(float));
      }
    }
  });
}

// Mirrors the spatial axes of an (n, c, z, y, x) tensor selected by `mask`
// (bit 0 = x, bit 1 = y, bit 2 = z). Its own inverse.
Result<Tensor> Mirror(const Tensor& t, int mask, ThreadPool* pool) {
  ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(DType::kF32, t.shape()));
  const int64_t nz = t.dim(2), ny = t.dim(3), nx = t.dim(4);
  const int64_t rows = t.dim(0) * t.dim(1) * nz * ny;
  ParallelFor(pool, rows, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t y = r % ny, z = (r / ny) % nz, nc = r / (ny * nz);
      const int64_t sz = (mask & 4) ? nz - 1 - z : z, sy = (mask & 2) ? ny - 1 - y : y;
      const float* s = t.data<float>() + ((nc * nz + sz) * ny + sy) * nx;
      float* d = out.data<float>() + r * nx;
      if (mask & 1) {
        for (int64_t x = 0; x < nx; ++x) d[x] = s[nx - 1 - x];
      } else {
        std::memcpy(d, s, static_cast<size_t>(nx) * sizeof(float));
      }
    }
  });
  return out;
}

// nnU-Net's mirroring TTA: the mean over all 8 combinations of flipped axes.
Result<Tensor> ForwardMaybeTta(Network& network, const Tensor& input, bool tta, ThreadPool* pool) {
  if (!tta) return network.Forward(input);
  Tensor sum;
  for (int mask = 0; mask < 8; ++mask) {
    Tensor x = input;
    if (mask != 0) {
      ITKIT_ASSIGN_OR_RETURN(x, Mirror(input, mask, pool));
    }
    ITKIT_ASSIGN_OR_RETURN(Tensor y, network.Forward(x));
    if (mask != 0) {
      ITKIT_ASSIGN_OR_RETURN(y, Mirror(y, mask, pool));
    }
    if (mask == 0) {
      ITKIT_ASSIGN_OR_RETURN(sum, y.Clone());
      continue;
    }
    if (y.shape() != sum.shape()) return Internal("TTA: output shapes differ between mirrors");
    float* s = sum.data<float>();
    const float* v = y.data<float>();
    ParallelFor(pool, sum.size(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) s[i] += v[i];
    });
  }
  float* s = sum.data<float>();
  ParallelFor(pool, sum.size(), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) s[i] *= 0.125f;
  });
  return sum;
}

// Logits a device kept (Network::ForwardKeepingLogitsOnDevice) for an accumulator
// that is on the host after all (e.g. the GPU had no room for the sums).
// They are copied into `staging`, one page-locked buffer (Backend::AllocateHost) kept
// for the whole run: the copy is a direct DMA, and no fresh host pages are faulted in
// per batch (both cost more than the network on a GPU: 20 vs 5 ms per 128^3 window).
// The result is valid until the next call.
Result<Tensor> LogitsOnHost(const Tensor& logits, const Network& network, DeviceBuffer& staging) {
  if (logits.device() == DeviceKind::kCpu) return logits;
  std::shared_ptr<Backend> backend = network.device_backend();
  if (!backend) return Internal("device logits from a network without a device backend");
  if (staging.bytes < logits.bytes()) {
    staging = DeviceBuffer{};
    ITKIT_ASSIGN_OR_RETURN(staging, backend->AllocateHost(logits.bytes()));
  }
  Tensor host = Tensor::View(logits.dtype(), logits.shape(), staging.data);
  ITKIT_RETURN_IF_ERROR(backend->CopyToHost(logits, host));
  if (host.dtype() == DType::kF32) return host;
  if (host.dtype() != DType::kF16) return Internal("device logits of dtype ", DTypeName(host.dtype()));
  ITKIT_ASSIGN_OR_RETURN(Tensor wide, Tensor::Allocate(DType::kF32, host.shape()));
  for (int64_t i = 0; i < host.size(); ++i) wide.data<float>()[i] = HalfToFloat(host.data<uint16_t>()[i]);
  return wide;
}

bool WantsCudaAccumulator(const WindowRunSpec& run, const Network& network) {
  return run.accumulate_device == "cuda" || (run.accumulate_device == "auto" && network.device() == "cuda");
}

// Prepares the next batch of windows on a helper thread while the network runs the
// current one: with the network on a GPU the CPU is otherwise idle then. Two slots;
// Get() returns the prefetched slot when it holds the batch asked for, else (first
// batch, the batch size shrank, or the helper failed) prepares it in line.
class BatchPrefetcher {
 public:
  // Windows [first, first + count), the last one repeated up to `fill` windows.
  using PrepareFn = std::function<Status(int64_t first, int64_t count, int64_t fill, int slot)>;
  BatchPrefetcher(PrepareFn prepare, bool enabled) : prepare_(std::move(prepare)), enabled_(enabled) {}
  ~BatchPrefetcher() { Drain(); }
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  Result<int> Get(int64_t first, int64_t count, int64_t fill) {
    const bool ready = Drain() && first == first_ && count == count_ && fill == fill_;
    first_ = count_ = fill_ = -1;
    if (ready) {
      slot_ ^= 1;
    } else {
      ITKIT_RETURN_IF_ERROR(prepare_(first, count, fill, slot_));
    }
    return slot_;
  }

  // Starts preparing [first, first + count) in the slot Get() did not return.
  void Start(int64_t first, int64_t count, int64_t fill) {
    if (!enabled_ || count <= 0) return;
    const int slot = slot_ ^ 1;
    try {
      pending_ = std::async(std::launch::async,
                            [this, first, count, fill, slot] { return prepare_(first, count, fill, slot); });
      first_ = first;
      count_ = count;
      fill_ = fill;
    } catch (...) {
      enabled_ = false;  // no thread to be had: prepare in line from now on
    }
  }

 private:
  // Waits for a running preparation; true when it succeeded.
  bool Drain() {
    if (!pending_.valid()) return false;
    try {
      return pending_.get().ok();
    } catch (...) {
      return false;
    }
  }

  PrepareFn prepare_;
  bool enabled_;
  int slot_ = 0;
  int64_t first_ = -1, count_ = -1, fill_ = -1;
  std::future<Status> pending_;
};

bool IsOutOfMemory(const Status& s) {
  return s.code() == StatusCode::kOutOfMemory || s.code() == StatusCode::kResourceExhausted;
}

Result<std::unique_ptr<Accumulator>> MakeAccumulator(const AccumulatorSpec& spec, const WindowRunSpec& run,
                                                     const Network& network, ThreadPool* pool,
                                                     std::vector<std::string>* notes) {
  if (WantsCudaAccumulator(run, network)) {
    auto cuda = CreateCudaAccumulator(spec, network.device_backend());
    if (cuda.ok()) return cuda;
    if (IsOutOfMemory(cuda.status())) {
      notes->push_back("GPU out of memory for the accumulator: accumulated on the host");
    } else if (run.accumulate_device == "cuda") {
      notes->push_back("CUDA accumulation unavailable (" + cuda.status().message() + "): accumulated on the host");
    }
  }
  return CreateHostAccumulator(spec, pool);
}

}  // namespace

std::optional<BlockGrid> InputBlocks(const Zyx& size, const Zyx& patch, const Zyx& stride) {
  auto plan = PlanWindows(size, patch, stride);
  if (!plan.ok() || plan->padding()) return std::nullopt;
  return BlockGrid(plan->starts, plan->patch, plan->padded, plan->padded[0]);
}

Result<WindowRunResult> RunWindows(Network& network, const WindowRunSpec& spec, ThreadPool* pool,
                                   const ProgressFn& progress, const std::atomic<bool>* cancel) {
  ITKIT_ASSIGN_OR_RETURN(WindowPlan plan, PlanWindows(spec.size, spec.patch, spec.stride));
  std::optional<BlockGrid> blocks;
  if (spec.input_blocked) {
    blocks = InputBlocks(spec.size, spec.patch, spec.stride);
    if (!blocks) return Internal("blocked window input for a volume that needs padding");
  }
  const int64_t patch_voxels = plan.patch[0] * plan.patch[1] * plan.patch[2];
  if (plan.padded[0] * plan.padded[1] * plan.padded[2] > spec.max_voxels / spec.channels ||
      patch_voxels * spec.channels > spec.max_voxels / std::max(1, spec.batch))
    return ResourceExhausted("patch ", ShapeToString({plan.patch[0], plan.patch[1], plan.patch[2]}), " x batch ",
                             spec.batch, " exceeds the limit of ", spec.max_voxels, " voxels");
  WindowRunResult r;
  r.extract.Start();
  const float* volume = spec.input;
  Buffer<float> padded;
  if (plan.padding()) {
    ITKIT_ASSIGN_OR_RETURN(padded, Buffer<float>::Allocate(spec.channels * plan.padded[0] * plan.padded[1] * plan.padded[2]));
    PadReplicate(spec.input, spec.channels, plan, padded.data(), pool);
    volume = padded.data();
  }
  r.extract.Stop();

  AccumulatorSpec aspec;
  aspec.grid = plan.padded;
  aspec.patch = plan.patch;
  aspec.starts = plan.starts;
  aspec.crop_begin = plan.pad_before;
  aspec.crop_size = plan.size;
  aspec.gaussian = spec.gaussian;
  for (size_t a = 0; a < 3; ++a) {
    if (spec.gaussian) aspec.weights[a] = GaussianWeights(plan.patch[a]);
    aspec.coverage[a] = AxisCoverage(plan.starts[a], plan.padded[a], plan.patch[a], aspec.weights[a]);
  }

  const int64_t total = plan.count();
  r.windows = total;
  int batch = static_cast<int>(std::clamp<int64_t>(spec.batch, 1, total));
  const Zyx& p = plan.patch;
  const int64_t window_elems = spec.channels * p[0] * p[1] * p[2];
  const std::shared_ptr<Backend> device = network.device_backend();  // nullptr: the CPU
  // Logits stay on the GPU when they are accumulated there (not with TTA, which
  // mirrors them on the host). For a host accumulator chosen up front (force_cpu) the
  // session downloads them into page-locked memory it reuses; if the GPU accumulator
  // could not be made after all, they come back through `logits_staging`.
  const bool logits_on_device = !spec.tta && device && WantsCudaAccumulator(spec, network);
  DeviceBuffer logits_staging;
  const bool prefetch = spec.prefetch.value_or(device != nullptr);
  // Batches for a device network live in memory its copies are fastest from (pinned)
  // and, without TTA, are uploaded by the helper thread on the device's copy queue
  // while the previous batch computes.
  const int slots = prefetch ? 2 : 1;
  const int64_t batch_elems = batch * window_elems;
  Buffer<float> host_batches[2];
  DeviceBuffer device_batches[2];
  bool device_input = device && !spec.tta && network.accepts_device_input();
  for (int k = 0; k < slots; ++k) {
    if (device) {
      ITKIT_ASSIGN_OR_RETURN(DeviceBuffer host, device->AllocateHost(sizeof(float) * batch_elems));
      host_batches[k] = Buffer<float>::Wrap(host.owner, static_cast<float*>(host.data), batch_elems);
    } else {
      ITKIT_ASSIGN_OR_RETURN(host_batches[k], Buffer<float>::Allocate(batch_elems));
    }
    if (device_input) {
      auto on_device = device->Allocate(sizeof(float) * batch_elems);
      if (on_device.ok()) {
        device_batches[k] = std::move(on_device).value();
      } else {
        device_input = false;  // no room: the session uploads each batch itself
      }
    }
  }
  auto starts_of = [&](int64_t first, int64_t count, int64_t fill) {
    std::vector<Zyx> starts;
    for (int64_t i = 0; i < fill; ++i) starts.push_back(plan.Start(first + std::min(i, count - 1)));
    return starts;
  };
  auto batch_shape = [&](int64_t count) { return Shape{count, spec.channels, p[0], p[1], p[2]}; };
  BatchPrefetcher batches(
      [&](int64_t first, int64_t count, int64_t fill, int slot) -> Status {
        float* host = host_batches[slot].data();
        ExtractBatch(volume, spec.channels, plan.padded, blocks ? &*blocks : nullptr, starts_of(first, count, fill),
                     p, host, pool);
        if (!device_input) return Status::Ok();
        Tensor dst = Tensor::View(DType::kF32, batch_shape(fill), device_batches[slot].data, device->device());
        return device->UploadAsync(Tensor::View(DType::kF32, batch_shape(fill), host), dst);
      },
      prefetch);
  // A device network runs the last, short batch at full size (its last window
  // repeated, the extra logits ignored): a new batch size would mean a new plan,
  // another arena and another cuDNN algorithm search.
  auto fill_of = [&](int64_t count) { return device ? std::max<int64_t>(count, batch) : count; };
  if (progress) progress(Progress{"windows", 0, total});

  int64_t done = 0;
  while (done < total) {
    if (cancel != nullptr && cancel->load()) return Cancelled("cancelled after ", done, " of ", total, " windows");
    const int64_t n = std::min<int64_t>(batch, total - done);
    const int64_t fill = fill_of(n);
    const std::vector<Zyx> starts = starts_of(done, n, n);
    r.extract.Start();
    ITKIT_ASSIGN_OR_RETURN(const int slot, batches.Get(done, n, fill));
    Tensor in = Tensor::View(DType::kF32, batch_shape(fill), host_batches[slot].data());
    if (device_input) {
      ITKIT_RETURN_IF_ERROR(device->WaitForUploads());
      in = Tensor::View(DType::kF32, batch_shape(fill), device_batches[slot].data, device->device());
    }
    r.extract.Stop();
    const int64_t next = std::min<int64_t>(batch, total - done - n);
    batches.Start(done + n, next, fill_of(next));

    r.network.Start();
    Result<Tensor> out =
        logits_on_device ? network.ForwardKeepingLogitsOnDevice(in) : ForwardMaybeTta(network, in, spec.tta, pool);
    r.network.Stop();
    if (!out.ok()) {
      if (IsOutOfMemory(out.status()) && batch > 1) {
        // The failed run may have left work queued that reads this batch's buffers.
        if (device) ITKIT_RETURN_IF_ERROR(device->Synchronize());
        batch = std::max(1, batch / 2);
        r.notes.push_back(StrCat("out of memory at ", n, " windows per forward (", out.status().message(),
                                 "): retrying with ", batch));
        continue;
      }
      return out.status().WithContext(StrCat("windows ", done + 1, "-", done + n, " of ", total));
    }
    if (out->dim(0) > n) {  // a filled batch: the leading n windows' logits, same memory
      Shape used = out->shape();
      used[0] = n;
      *out = out->Reshaped(used);
    }
    const int classes = static_cast<int>(out->dim(1));
    if (!r.accumulator) {
      if (spec.expected_classes > 0 && classes != spec.expected_classes)
        return InvalidArgument("the network returned ", classes, " classes, but the model's labels declare ",
                               spec.expected_classes);
      if (classes < 1 || classes > 65536) return InvalidArgument("the network returned ", classes, " classes");
      aspec.classes = classes;
      r.classes = classes;
      r.accumulate.Start();
      // "More than 255 classes" → 16-bit labels.
      LabelTarget& t = aspec.target;
      t.wide = classes > 255;
      if (t.wide) {
        ITKIT_ASSIGN_OR_RETURN(r.labels16, Buffer<uint16_t>::Allocate(spec.label_voxels));
        t.data = r.labels16.data();
      } else {
        ITKIT_ASSIGN_OR_RETURN(r.labels8, Buffer<uint8_t>::Allocate(spec.label_voxels));
        t.data = r.labels8.data();
      }
      t.offset = spec.label_offset;
      t.strides = spec.label_strides;
      aspec.keep_averages = spec.keep_averages;
      ITKIT_ASSIGN_OR_RETURN(r.accumulator, MakeAccumulator(aspec, spec, network, pool, &r.notes));
      r.accumulate.Stop();
    } else if (classes != r.classes) {
      return Internal("the network's class count changed between windows");
    }
    r.accumulate.Start();
    if (out->device() != DeviceKind::kCpu && r.accumulator->device() != "cuda") {
      ITKIT_ASSIGN_OR_RETURN(*out, LogitsOnHost(*out, network, logits_staging));
    }
    ITKIT_RETURN_IF_ERROR(r.accumulator->Add(*out, starts));
    r.accumulate.Stop();
    done += n;
    if (progress) progress(Progress{"windows", done, total});
  }
  r.accumulate.Start();
  ITKIT_RETURN_IF_ERROR(r.accumulator->Finish());
  r.accumulate.Stop();
  r.batch = batch;
  return r;
}

}  // namespace itkit::pipeline
