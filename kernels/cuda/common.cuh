// Shared by every file of the CUDA backend: status-returning checks for CUDA, cuDNN
// and cuBLAS calls, the per-backend context (device, stream, library handles, tuning
// cache, staging buffers), the op table entry type, and small device helpers.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/cublas_api.h"
#include "cuda/cudnn_api.h"
#include "cuda/kernel_math.h"
#include "cuda/tuning_cache.h"
#include "itkit/backend.h"
#include "itkit/devices.h"
#include "itkit/status.h"

namespace itkit::cuda {

// ---- errors as values ---------------------------------------------------------------

Status CudaError(cudaError_t error, const char* call, const char* file, int line);
Status CudnnError(cudnnStatus_t status, const char* call, const char* file, int line);
Status CublasError(cublasStatus_t status, const char* call, const char* file, int line);

}  // namespace itkit::cuda

// Each returns a Status naming the failed call (and file:line) from the enclosing function.
#define ITKIT_CUDA_CHECK(call)                                                          \
  do {                                                                                  \
    const cudaError_t itkit_cuda_err_ = (call);                                         \
    if (itkit_cuda_err_ != cudaSuccess)                                                 \
      return ::itkit::cuda::CudaError(itkit_cuda_err_, #call, __FILE__, __LINE__);      \
  } while (0)
#define ITKIT_CUDNN_CHECK(call)                                                         \
  do {                                                                                  \
    const cudnnStatus_t itkit_cudnn_st_ = (call);                                       \
    if (itkit_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                        \
      return ::itkit::cuda::CudnnError(itkit_cudnn_st_, #call, __FILE__, __LINE__);     \
  } while (0)
#define ITKIT_CUBLAS_CHECK(call)                                                        \
  do {                                                                                  \
    const cublasStatus_t itkit_cublas_st_ = (call);                                     \
    if (itkit_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      return ::itkit::cuda::CublasError(itkit_cublas_st_, #call, __FILE__, __LINE__);   \
  } while (0)
// After a <<<...>>> launch: configuration errors show at once, faults at the next sync.
#define ITKIT_CUDA_CHECK_LAUNCH(what) ITKIT_CUDA_CHECK(cudaGetLastError())

namespace itkit::cuda {

// ---- the context shared by the backend, its kernels and accumulators -----------------

struct MemoryCounter {
  std::atomic<size_t> live{0}, peak{0};
  void Add(size_t bytes);
  void Sub(size_t bytes) { live.fetch_sub(bytes); }
};

class CudaContext {
 public:
  // Unavailable (with the reason) when the device cannot be used.
  static Result<std::shared_ptr<CudaContext>> Create(const CudaBackendOptions& options);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  // Makes this context's device current on the calling thread (the session may run
  // on another thread than the one that created the backend).
  Status Activate() const;
  Result<DeviceBuffer> Allocate(size_t bytes);
  // Page-locked host memory (cudaHostAlloc); OutOfMemory when the system refuses.
  Result<DeviceBuffer> AllocateHost(size_t bytes);
  // Host -> device on the stream, through pinned staging; `src` may be reused on
  // return, unless it is itself page-locked (AllocateHost): then the DMA reads it in
  // stream order, so it must stay unchanged until the stream has passed the copy.
  Status Upload(void* dst, const void* src, size_t bytes);
  // Device -> host after the stream's earlier work; complete on return.
  Status Download(void* dst, const void* src, size_t bytes);
  Status Synchronize() const;
  // Host -> device on a second stream (the copy engine runs beside the kernels);
  // WaitForUploads() makes the main stream's later work wait for every upload
  // started before it. Thread-safe: the pipeline uploads from a helper thread.
  Status UploadOnCopyStream(void* dst, const void* src, size_t bytes);
  Status WaitForUploads();

  int device = 0;
  CudaBackendOptions options;
  std::string device_name;
  int cc_major = 0, cc_minor = 0;
  int num_sms = 1;
  size_t total_memory = 0;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  const CublasApi* blas = nullptr;  // cuBLAS entry points (dlopen), set with cublas
  std::unique_ptr<TuningCache> tuning;
  std::string tuning_tag;  // device + library versions: part of every tuning key
  std::shared_ptr<MemoryCounter> memory = std::make_shared<MemoryCounter>();

 private:
  CudaContext() = default;
  Status EnsureStaging();

  std::mutex copy_mutex_;
  std::mutex upload_mutex_;                  // the copy stream and its event
  cudaStream_t copy_stream_ = nullptr;       // created on the first UploadOnCopyStream
  cudaEvent_t uploads_done_ = nullptr;
  bool upload_pending_ = false;
  static constexpr size_t kStagingBytes = size_t{8} << 20;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_free_[2] = {nullptr, nullptr};
  bool staging_failed_ = false;  // pinned memory refused: plain async copies instead
};

// ---- the op table -------------------------------------------------------------------

using CudaSupportFn = bool (*)(const NodeSignature& sig, const CudaContext& ctx, std::string* reason);
using CudaCreateFn = Result<std::unique_ptr<OpKernel>> (*)(const NodeSignature& sig,
                                                           const std::shared_ptr<CudaContext>& ctx);

struct CudaOpEntry {
  std::string_view domain;  // "" (ONNX) or "itkit"
  std::string_view op_type;
  CudaSupportFn supports;
  CudaCreateFn create;
};

// Channels-last signatures (channels_last_dispatch.cu): convolutions and norms read the
// layout themselves, layout-blind ops run their ordinary kernel on the stored shapes.
bool ChannelsLastSupports(const CudaOpEntry& entry, const NodeSignature& sig, const CudaContext& ctx,
                          std::string* reason);
Result<std::unique_ptr<OpKernel>> CreateChannelsLastKernel(const CudaOpEntry& entry, const NodeSignature& sig,
                                                           const std::shared_ptr<CudaContext>& ctx);

void AppendConvOps(std::vector<CudaOpEntry>& table);         // conv_cudnn.cu
void AppendNormOps(std::vector<CudaOpEntry>& table);         // norm_act.cu
void AppendElementwiseOps(std::vector<CudaOpEntry>& table);  // elementwise.cu
void AppendTensorOps(std::vector<CudaOpEntry>& table);       // tensor_ops.cu
void AppendResizeOps(std::vector<CudaOpEntry>& table);       // resize.cu
void AppendPoolOps(std::vector<CudaOpEntry>& table);         // pool.cu
void AppendSoftmaxOps(std::vector<CudaOpEntry>& table);      // softmax.cu
void AppendArgMaxOps(std::vector<CudaOpEntry>& table);       // argmax.cu
void AppendMatMulOps(std::vector<CudaOpEntry>& table);       // matmul_cublas.cu
void AppendLayerNormOps(std::vector<CudaOpEntry>& table);    // layer_norm.cu
void AppendGatherOps(std::vector<CudaOpEntry>& table);       // gather.cu
void AppendReduceOps(std::vector<CudaOpEntry>& table);       // reduce.cu

// The context of a CUDA backend; nullptr for any other backend.
std::shared_ptr<CudaContext> ContextOf(const Backend& backend);

// ---- helpers for Supports / CreateKernel --------------------------------------------

// Sets *reason (when given) and returns false: `return Reject(reason, "...", x);`
template <typename... Args>
bool Reject(std::string* reason, const Args&... args) {
  if (reason) *reason = StrCat(args...);
  return false;
}

inline bool IsF32OrF16(DType t) { return t == DType::kF32 || t == DType::kF16; }
// Every element index of the op must fit the kernels' int64 arithmetic and cuDNN's
// int dimensions; beyond that the CPU runs it.
constexpr int64_t kMaxCudnnElements = (int64_t{1} << 31) - 1;

// "activation"/"alpha" attributes of FusedConv/GroupNorm.
Result<Act> ParseActivation(const Node& node, float* alpha);

// A kernel from a callable `Status(KernelContext&)`; Run makes the device current first.
template <typename Fn>
class FnKernel final : public OpKernel {
 public:
  FnKernel(std::shared_ptr<CudaContext> ctx, Fn fn, size_t workspace = 0)
      : ctx_(std::move(ctx)), fn_(std::move(fn)), workspace_(workspace) {}
  Status Run(KernelContext& kc) override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    return fn_(kc);
  }
  size_t workspace_bytes() const override { return workspace_; }

 private:
  std::shared_ptr<CudaContext> ctx_;
  Fn fn_;
  size_t workspace_;
};
template <typename Fn>
std::unique_ptr<OpKernel> MakeKernel(std::shared_ptr<CudaContext> ctx, Fn fn, size_t workspace = 0) {
  return std::make_unique<FnKernel<Fn>>(std::move(ctx), std::move(fn), workspace);
}

// ---- launch configuration and element access -----------------------------------------

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more
// than the items need.
inline unsigned GridFor(int64_t n, const CudaContext& ctx, int threads = kThreads) {
  const int64_t needed = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(ctx.num_sms) * 32;
  const int64_t g = needed < cap ? needed : cap;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

template <typename T> __device__ __forceinline__ float ToF(T v);
template <> __device__ __forceinline__ float ToF<float>(float v) { return v; }
template <> __device__ __forceinline__ float ToF<__half>(__half v) { return __half2float(v); }
// A norm's scale/shift parameter: f32, or f16 where FP16 mode stores it so.
__device__ __forceinline__ float LoadParam(const void* p, bool half, int64_t i) {
  return half ? __half2float(static_cast<const __half*>(p)[i]) : static_cast<const float*>(p)[i];
}
template <typename T> __device__ __forceinline__ T FromF(float v);
template <> __device__ __forceinline__ float FromF<float>(float v) { return v; }
template <> __device__ __forceinline__ __half FromF<__half>(float v) { return __float2half_rn(v); }

// Calls fn.template operator()<T>() with T = float or __half for a float dtype.
template <typename Fn>
Status DispatchFloat(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF16: return fn.template operator()<__half>();
    default: return Internal("CUDA kernel called with dtype ", DTypeName(dtype));
  }
}

// Up to 8 dims for index arithmetic in kernels (passed by value as kernel parameters).
constexpr int kMaxDims = 8;
struct Dims {
  int rank = 0;
  int64_t d[kMaxDims] = {};
};

}  // namespace itkit::cuda
