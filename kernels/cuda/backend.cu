// The CUDA backend: the op table, placement answers (Supports), kernel creation,
// device memory and host<->device copies. One CUDA stream per backend carries every
// kernel, cuDNN and cuBLAS call and copy, so ordering needs no events between ops.
#include <algorithm>
#include <cstring>

#include "cuda/common.cuh"
#include "itkit/channels_last.h"
#include "itkit/cuda_backend.h"
#include "itkit/log.h"
#include "itkit/op_table.h"

namespace itkit::cuda {

// ---- errors ---------------------------------------------------------------------------

namespace {
std::string_view BaseName(const char* file) {
  std::string_view f(file);
  const size_t slash = f.find_last_of('/');
  return slash == std::string_view::npos ? f : f.substr(slash + 1);
}
}  // namespace

Status CudaError(cudaError_t error, const char* call, const char* file, int line) {
  const std::string msg = StrCat(call, " failed: ", cudaGetErrorName(error), " (", cudaGetErrorString(error),
                                 ") at ", BaseName(file), ":", line);
  switch (error) {
    case cudaErrorMemoryAllocation: return OutOfMemory("GPU: ", msg);
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorDevicesUnavailable: return Unavailable(msg);
    default: return Internal(msg);
  }
}

Status CudnnError(cudnnStatus_t status, const char* call, const char* file, int line) {
  const std::string msg =
      StrCat(call, " failed: ", CudnnStatusText(status), " at ", BaseName(file), ":", line);
  // cuDNN 9 codes are category (1000s) + detail.
  if (CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED) return Unsupported("cuDNN: ", msg);
  if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    return OutOfMemory("cuDNN: ", msg);
  return Internal("cuDNN: ", msg);
}

Status CublasError(cublasStatus_t status, const char* call, const char* file, int line) {
  const std::string msg =
      StrCat(call, " failed: ", CublasStatusText(status), " at ", BaseName(file), ":", line);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return OutOfMemory("cuBLAS: ", msg);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return Unsupported("cuBLAS: ", msg);
  return Internal("cuBLAS: ", msg);
}

// ---- context --------------------------------------------------------------------------

void MemoryCounter::Add(size_t bytes) {
  const size_t now = live.fetch_add(bytes) + bytes;
  size_t prev = peak.load();
  while (now > prev && !peak.compare_exchange_weak(prev, now)) {
  }
}

CudaContext::~CudaContext() {
  // Errors are ignored here: at process exit the CUDA runtime may already be gone.
  if (cudaSetDevice(device) != cudaSuccess) return;
  if (stream) cudaStreamSynchronize(stream);
  for (int i = 0; i < 2; ++i) {
    if (staging_free_[i]) cudaEventDestroy(staging_free_[i]);
    if (staging_[i]) cudaFreeHost(staging_[i]);
  }
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  if (uploads_done_) cudaEventDestroy(uploads_done_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  if (cublas && blas) blas->Destroy(cublas);
  if (cudnn) dnn().Destroy(cudnn);
  if (stream) cudaStreamDestroy(stream);
}

Status CudaContext::UploadOnCopyStream(void* dst, const void* src, size_t bytes) {
  ITKIT_RETURN_IF_ERROR(Activate());
  std::lock_guard<std::mutex> lock(upload_mutex_);
  if (!copy_stream_) {
    ITKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    ITKIT_CUDA_CHECK(cudaEventCreateWithFlags(&uploads_done_, cudaEventDisableTiming));
  }
  if (bytes == 0) return Status::Ok();
  // From pageable memory the driver stages the copy before returning; from pinned
  // memory (AllocateHost) the DMA runs while this thread goes on.
  ITKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_stream_));
  ITKIT_CUDA_CHECK(cudaEventRecord(uploads_done_, copy_stream_));
  upload_pending_ = true;
  return Status::Ok();
}

Status CudaContext::WaitForUploads() {
  ITKIT_RETURN_IF_ERROR(Activate());
  std::lock_guard<std::mutex> lock(upload_mutex_);
  if (!upload_pending_) return Status::Ok();
  ITKIT_CUDA_CHECK(cudaStreamWaitEvent(stream, uploads_done_, 0));
  upload_pending_ = false;
  return Status::Ok();
}

Status CudaContext::Activate() const {
  ITKIT_CUDA_CHECK(cudaSetDevice(device));
  return Status::Ok();
}

Status CudaContext::Synchronize() const {
  ITKIT_RETURN_IF_ERROR(Activate());
  ITKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::Ok();
}

Result<DeviceBuffer> CudaContext::Allocate(size_t bytes) {
  ITKIT_RETURN_IF_ERROR(Activate());
  // cudaMalloc returns 256-byte aligned memory; round up so vector loads never overrun.
  const size_t rounded = std::max<size_t>(256, (bytes + 255) / 256 * 256);
  void* data = nullptr;
  const cudaError_t err = cudaMalloc(&data, rounded);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) allocation error
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    return OutOfMemory("cudaMalloc of ", rounded, " bytes on GPU ", device, " (", device_name,
                       ") failed: ", cudaGetErrorString(err), "; ", free_bytes >> 20, " MiB of ", total >> 20,
                       " MiB free");
  }
  memory->Add(rounded);
  DeviceBuffer buf;
  const int dev = device;
  std::shared_ptr<MemoryCounter> counter = memory;
  buf.owner = std::shared_ptr<void>(data, [dev, counter, rounded](void* p) {
    cudaSetDevice(dev);
    cudaFree(p);  // waits for kernels still using p
    counter->Sub(rounded);
  });
  buf.data = data;
  buf.bytes = bytes;
  return buf;
}

Status CudaContext::EnsureStaging() {
  if (staging_[0] || staging_failed_) return Status::Ok();
  for (int i = 0; i < 2; ++i) {
    if (cudaHostAlloc(&staging_[i], kStagingBytes, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      staging_[i] = nullptr;
      staging_failed_ = true;
    }
    if (!staging_failed_) ITKIT_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free_[i], cudaEventDisableTiming));
  }
  if (staging_failed_) LogWarning("CUDA: pinned staging buffers unavailable; host copies use pageable memory");
  return Status::Ok();
}

// Page-locked host memory (cudaHostAlloc, e.g. Backend::AllocateHost) can be DMA'd
// directly; anything else goes through the staging buffers.
bool IsPinned(const void* host) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, host) != cudaSuccess) {
    (void)cudaGetLastError();  // not a pointer CUDA knows: not pinned
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}

Result<DeviceBuffer> CudaContext::AllocateHost(size_t bytes) {
  ITKIT_RETURN_IF_ERROR(Activate());
  void* data = nullptr;
  if (cudaHostAlloc(&data, bytes ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) {
    (void)cudaGetLastError();
    return OutOfMemory("no ", bytes >> 20, " MiB of page-locked host memory");
  }
  return DeviceBuffer{std::shared_ptr<void>(data, [](void* p) { cudaFreeHost(p); }), data, bytes};
}

Status CudaContext::Upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  ITKIT_RETURN_IF_ERROR(Activate());
  std::lock_guard<std::mutex> lock(copy_mutex_);
  ITKIT_RETURN_IF_ERROR(EnsureStaging());
  if (staging_failed_ || IsPinned(src)) {
    // From pageable memory the call returns once the source has been staged by the
    // driver; from pinned memory (AllocateHost) the DMA reads it later, in stream order.
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return Status::Ok();
  }
  // Two pinned buffers: the host memcpy into one overlaps the DMA out of the other.
  size_t offset = 0;
  for (int k = 0; offset < bytes; k ^= 1) {
    const size_t n = std::min(kStagingBytes, bytes - offset);
    ITKIT_CUDA_CHECK(cudaEventSynchronize(staging_free_[k]));
    std::memcpy(staging_[k], static_cast<const char*>(src) + offset, n);
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + offset, staging_[k], n, cudaMemcpyHostToDevice, stream));
    ITKIT_CUDA_CHECK(cudaEventRecord(staging_free_[k], stream));
    offset += n;
  }
  return Status::Ok();
}

Status CudaContext::Download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  ITKIT_RETURN_IF_ERROR(Activate());
  std::lock_guard<std::mutex> lock(copy_mutex_);
  ITKIT_RETURN_IF_ERROR(EnsureStaging());
  if (staging_failed_ || IsPinned(dst)) {
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
    ITKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return Status::Ok();
  }
  // Chunk i goes device -> staging[i % 2] while chunk i - 1 is copied out on the host.
  size_t offset = 0, prev_offset = 0, prev_n = 0;
  int k = 0;
  bool have_prev = false;
  while (offset < bytes) {
    const size_t n = std::min(kStagingBytes, bytes - offset);
    ITKIT_CUDA_CHECK(cudaEventSynchronize(staging_free_[k]));  // e.g. an upload still reading it
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(staging_[k], static_cast<const char*>(src) + offset, n, cudaMemcpyDeviceToHost, stream));
    ITKIT_CUDA_CHECK(cudaEventRecord(staging_free_[k], stream));
    if (have_prev) {
      ITKIT_CUDA_CHECK(cudaEventSynchronize(staging_free_[k ^ 1]));
      std::memcpy(static_cast<char*>(dst) + prev_offset, staging_[k ^ 1], prev_n);
    }
    have_prev = true;
    prev_offset = offset;
    prev_n = n;
    offset += n;
    k ^= 1;
  }
  ITKIT_CUDA_CHECK(cudaEventSynchronize(staging_free_[k ^ 1]));
  std::memcpy(static_cast<char*>(dst) + prev_offset, staging_[k ^ 1], prev_n);
  return Status::Ok();
}

// ---- shared helpers -------------------------------------------------------------------

Result<Act> ParseActivation(const Node& node, float* alpha) {
  const std::string act = node.attrs.GetString("activation", "");
  *alpha = node.attrs.GetFloat("alpha", 0.01f);
  if (act.empty()) return Act::kNone;
  if (act == "Relu") return Act::kRelu;
  if (act == "LeakyRelu") return Act::kLeakyRelu;
  if (act == "Sigmoid") return Act::kSigmoid;
  if (act == "Tanh") return Act::kTanh;
  if (act == "Gelu") return Act::kGelu;
  return Unsupported(node.Describe(), ": fused activation '", act, "' has no CUDA epilogue");
}

// ---- the backend ------------------------------------------------------------------------

namespace {

const std::vector<CudaOpEntry>& OpTable() {
  static const std::vector<CudaOpEntry> table = [] {
    std::vector<CudaOpEntry> t;
#if !defined(ITKIT_CUDA_EMU)  // the host emulator (tests/cuda_emu) has no cuDNN or cuBLAS
    AppendConvOps(t);
#endif
    AppendNormOps(t);
    AppendElementwiseOps(t);
    AppendTensorOps(t);
    AppendResizeOps(t);
    AppendPoolOps(t);
    AppendSoftmaxOps(t);
    AppendArgMaxOps(t);
#if !defined(ITKIT_CUDA_EMU)
    AppendMatMulOps(t);
#endif
    AppendLayerNormOps(t);
    AppendGatherOps(t);
    AppendReduceOps(t);
    return t;
  }();
  return table;
}

const CudaOpEntry* FindEntry(const Node& node) {
  const bool onnx = IsOnnxDomain(node.domain);
  for (const CudaOpEntry& e : OpTable()) {
    if (e.op_type != node.op_type) continue;
    if (onnx ? IsOnnxDomain(e.domain) : e.domain == node.domain) return &e;
  }
  return nullptr;
}

// A captured CUDA graph of a run of kernel steps, replayed on the backend's stream.
class CudaGraphRecording final : public StepRecording {
 public:
  CudaGraphRecording(std::shared_ptr<CudaContext> ctx, cudaGraph_t graph, cudaGraphExec_t exec)
      : ctx_(std::move(ctx)), graph_(graph), exec_(exec) {}
  ~CudaGraphRecording() override {
    if (!ctx_->Activate().ok()) return;
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }
  CudaGraphRecording(const CudaGraphRecording&) = delete;
  CudaGraphRecording& operator=(const CudaGraphRecording&) = delete;

  Status Replay() override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    ITKIT_CUDA_CHECK(cudaGraphLaunch(exec_, ctx_->stream));
    return Status::Ok();
  }

 private:
  std::shared_ptr<CudaContext> ctx_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::shared_ptr<CudaContext> ctx) : ctx_(std::move(ctx)) {}
  std::string_view name() const override { return "cuda"; }
  DeviceKind device() const override { return DeviceKind::kCuda; }

  bool Supports(const NodeSignature& sig, std::string* reason) const override {
    const CudaOpEntry* e = FindEntry(*sig.node);
    if (!e) return Reject(reason, "no CUDA kernel for ", sig.node->op_type);
    // Common limits: known dtypes, shapes the kernels' index math handles.
    for (const std::vector<ValueDesc>* list : {&sig.inputs, &sig.outputs}) {
      for (const ValueDesc& d : *list) {
        if (d.dtype == DType::kUndefined) continue;
        if (d.shape.size() > static_cast<size_t>(kMaxDims))
          return Reject(reason, "rank ", d.shape.size(), " exceeds the CUDA kernels' ", kMaxDims);
        auto count = CheckedElementCount(d.shape);
        if (!count.ok()) return Reject(reason, count.status().message());
        if (*count > kMaxCudnnElements) return Reject(reason, "tensor of ", *count, " elements is too large");
      }
    }
    // Kernels write float outputs in their data input's float type; a mixed signature
    // (say f16 in, f32 out) would be misread, so it is declined here for every op.
    const bool casts = sig.node->op_type == "Cast" || sig.node->op_type == "CastLike";
    if (!casts && !sig.inputs.empty() && IsFloat(sig.inputs[0].dtype)) {
      for (const ValueDesc& out : sig.outputs)
        if (IsFloat(out.dtype) && out.dtype != sig.inputs[0].dtype)
          return Reject(reason, "output ", DTypeName(out.dtype), " differs from input ", DTypeName(sig.inputs[0].dtype));
    }
    if (HasChannelsLast(sig)) {
      if (!prefers_channels_last()) return Reject(reason, "channels-last storage is off");
      return ChannelsLastSupports(*e, sig, *ctx_, reason);
    }
    return e->supports(sig, *ctx_, reason);
  }

  bool prefers_channels_last() const override { return ctx_->options.fp16 && ctx_->options.channels_last; }

  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    const CudaOpEntry* e = FindEntry(*sig.node);
    if (!e) return Unsupported(sig.node->Describe(), ": no CUDA kernel");
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    auto kernel = HasChannelsLast(sig) ? CreateChannelsLastKernel(*e, sig, ctx_) : e->create(sig, ctx_);
    if (!kernel.ok()) {
      const Status s = kernel.status();
      if (s.message().rfind(sig.node->Describe(), 0) == 0) return s;
      return s.WithContext(sig.node->Describe() + " on CUDA");
    }
    return kernel;
  }

  Result<DeviceBuffer> Allocate(size_t bytes) override { return ctx_->Allocate(bytes); }
  Result<DeviceBuffer> AllocateHost(size_t bytes) override {
    auto pinned = ctx_->AllocateHost(bytes);
    if (pinned.ok()) return pinned;
    LogWarning("CUDA: ", pinned.status().message(), "; using pageable memory");
    return Backend::AllocateHost(bytes);
  }

  Status CopyFromHost(const Tensor& host, Tensor& device) override {
    if (host.bytes() != device.bytes())
      return Internal("CUDA upload size mismatch: ", host.bytes(), " vs ", device.bytes(), " bytes");
    if (host.device() != DeviceKind::kCpu || device.device() != DeviceKind::kCuda)
      return Internal("CUDA upload needs a host source and a CUDA destination");
    return ctx_->Upload(device.raw(), host.raw(), host.bytes());
  }

  Status CopyToHost(const Tensor& device, Tensor& host) override {
    if (host.bytes() != device.bytes())
      return Internal("CUDA download size mismatch: ", device.bytes(), " vs ", host.bytes(), " bytes");
    if (host.device() != DeviceKind::kCpu || device.device() != DeviceKind::kCuda)
      return Internal("CUDA download needs a CUDA source and a host destination");
    return ctx_->Download(host.raw(), device.raw(), host.bytes());
  }

  Status Synchronize() override { return ctx_->Synchronize(); }

  Status CopyOnDevice(const Tensor& from, Tensor& to) override {
    if (from.bytes() != to.bytes())
      return Internal("CUDA device copy size mismatch: ", from.bytes(), " vs ", to.bytes(), " bytes");
    if (from.device() != DeviceKind::kCuda || to.device() != DeviceKind::kCuda)
      return Internal("CUDA device copy needs CUDA tensors");
    if (from.bytes() == 0) return Status::Ok();
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(to.raw(), from.raw(), from.bytes(), cudaMemcpyDeviceToDevice, ctx_->stream));
    return Status::Ok();
  }

  Status UploadAsync(const Tensor& host, Tensor& device) override {
    if (host.bytes() != device.bytes())
      return Internal("CUDA upload size mismatch: ", host.bytes(), " vs ", device.bytes(), " bytes");
    if (host.device() != DeviceKind::kCpu || device.device() != DeviceKind::kCuda)
      return Internal("CUDA upload needs a host source and a CUDA destination");
    return ctx_->UploadOnCopyStream(device.raw(), host.raw(), host.bytes());
  }

  Status WaitForUploads() override { return ctx_->WaitForUploads(); }

  bool prefers_half_storage() const override { return ctx_->options.fp16 && ctx_->options.half_storage; }

  // CUDA Graphs: the session's kernel steps between two copies are captured from the
  // backend's stream (thread-local mode: another thread's CUDA calls are not
  // disturbed) and replayed with one cudaGraphLaunch.
  bool CanRecord() const override { return ctx_->options.cuda_graphs; }

  Status BeginRecording() override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    ITKIT_CUDA_CHECK(cudaStreamBeginCapture(ctx_->stream, cudaStreamCaptureModeThreadLocal));
    return Status::Ok();
  }

  Result<std::unique_ptr<StepRecording>> EndRecording() override {
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(ctx_->stream, &graph);
    if (ended != cudaSuccess || !graph) {
      if (graph) cudaGraphDestroy(graph);
      (void)cudaGetLastError();  // capture errors are not sticky; clear the last-error slot
      return Unsupported("CUDA graph capture failed: ", cudaGetErrorName(ended));
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    if (made != cudaSuccess) {
      cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      return Unsupported("CUDA graph instantiation failed: ", cudaGetErrorName(made));
    }
    return std::unique_ptr<StepRecording>(std::make_unique<CudaGraphRecording>(ctx_, graph, exec));
  }

  const std::shared_ptr<CudaContext>& context() const { return ctx_; }

 private:
  std::shared_ptr<CudaContext> ctx_;
};

}  // namespace

std::shared_ptr<CudaContext> ContextOf(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  return cuda ? cuda->context() : nullptr;
}

std::shared_ptr<Backend> MakeCudaBackend(std::shared_ptr<CudaContext> ctx) {
  return std::make_shared<CudaBackend>(std::move(ctx));
}

Result<CudaMemoryStats> GetMemoryStats(const Backend& backend) {
  std::shared_ptr<CudaContext> ctx = ContextOf(backend);
  if (!ctx) return InvalidArgument("GetMemoryStats: backend '", backend.name(), "' is not a CUDA backend");
  ITKIT_RETURN_IF_ERROR(ctx->Activate());
  CudaMemoryStats s;
  s.live_bytes = ctx->memory->live.load();
  s.peak_bytes = ctx->memory->peak.load();
  ITKIT_CUDA_CHECK(cudaMemGetInfo(&s.device_free, &s.device_total));
  s.device_name = ctx->device_name;
  return s;
}

Status ResetPeakMemory(const Backend& backend) {
  std::shared_ptr<CudaContext> ctx = ContextOf(backend);
  if (!ctx) return InvalidArgument("ResetPeakMemory: backend '", backend.name(), "' is not a CUDA backend");
  ctx->memory->peak.store(ctx->memory->live.load());
  return Status::Ok();
}

}  // namespace itkit::cuda
