// Device discovery and backend creation (itkit/devices.h) for CUDA builds. Every
// way CUDA can be unusable (no driver, old driver, no GPU, a GPU this build has no
// kernels for, cuDNN/cuBLAS failing to start) becomes an Unavailable status with the
// reason, so callers log it and run on the CPU.
#include <cstdlib>
#include <string>

#include "cuda/common.cuh"
#include "itkit/devices.h"
#include "itkit/log.h"

namespace itkit {
namespace cuda {

std::shared_ptr<Backend> MakeCudaBackend(std::shared_ptr<CudaContext> ctx);  // backend.cu

namespace {

__global__ void ProbeKernel(int* out) {
  if (out) *out = 42;
}

std::string RuntimeVersionText() {
  return StrCat(CUDART_VERSION / 1000, ".", (CUDART_VERSION % 1000) / 10);
}

// Why cudaGetDeviceCount (the first call that needs the driver) failed, for people.
std::string DescribeNoCuda(cudaError_t err) {
  switch (err) {
    case cudaErrorInsufficientDriver:
      return StrCat("no usable NVIDIA driver (cudaErrorInsufficientDriver: the driver is missing or older than "
                    "the CUDA ",
                    RuntimeVersionText(), " runtime this build uses)");
    case cudaErrorNoDevice: return "no CUDA GPU found (cudaErrorNoDevice)";
    case cudaErrorDevicesUnavailable: return "every CUDA GPU is busy or in exclusive use (cudaErrorDevicesUnavailable)";
    default:
      return StrCat("CUDA initialisation failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  }
}

// Whether this build has machine code (or PTX) the current device can run.
Status ProbeDevice(int device, const cudaDeviceProp& props) {
  cudaFuncAttributes attrs{};
  const cudaError_t err = cudaFuncGetAttributes(&attrs, ProbeKernel);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Unavailable("GPU ", device, " (", props.name, ") is compute capability ", props.major, ".", props.minor,
                       " but this build has no kernels for it (", cudaGetErrorName(err),
                       "; rebuild with CMAKE_CUDA_ARCHITECTURES including ", props.major, props.minor, ")");
  }
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<CudaContext>> CudaContext::Create(const CudaBackendOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return Unavailable(DescribeNoCuda(err));
  }
  if (count == 0) return Unavailable("no CUDA GPU found");
  if (options.device < 0 || options.device >= count)
    return Unavailable("CUDA GPU ", options.device, " was requested; this machine has ", count, " (0..", count - 1, ")");

  std::shared_ptr<CudaContext> ctx(new CudaContext());
  ctx->device = options.device;
  ctx->options = options;
  ITKIT_CUDA_CHECK(cudaSetDevice(ctx->device));
  cudaDeviceProp props{};
  ITKIT_CUDA_CHECK(cudaGetDeviceProperties(&props, ctx->device));
  ctx->device_name = props.name;
  ctx->cc_major = props.major;
  ctx->cc_minor = props.minor;
  ctx->num_sms = props.multiProcessorCount > 0 ? props.multiProcessorCount : 1;
  ctx->total_memory = props.totalGlobalMem;
  ITKIT_RETURN_IF_ERROR(ProbeDevice(ctx->device, props));

  ITKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  // A real launch: catches a device that enumerates but cannot run work.
  ProbeKernel<<<1, 1, 0, ctx->stream>>>(nullptr);
  ITKIT_CUDA_CHECK_LAUNCH("ProbeKernel");
  ITKIT_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));

#if defined(ITKIT_CUDA_EMU)
  // The host emulator (tests/cuda_emu) has neither cuDNN nor cuBLAS: its op table
  // leaves convolutions and matrix products to the CPU (backend.cu).
  ctx->tuning = std::make_unique<TuningCache>(options.tuning_cache_dir);
  ctx->tuning_tag = StrCat(props.name, "|sm", props.major, props.minor, "|emulated");
  LogInfo("CUDA backend on the host emulator: ", props.name, ", ", ctx->num_sms, " SMs; no cuDNN or cuBLAS; ",
          options.fp16 ? "fp16" : "fp32");
#else
  ITKIT_RETURN_IF_ERROR(LoadCudnn().status());
  const size_t cudnn_version = dnn().GetVersion();
  if (cudnn_version < 90000)
    return Unavailable("cuDNN ", cudnn_version, " was loaded; the CUDA backend needs cuDNN 9");
  cudnnStatus_t cst = dnn().Create(&ctx->cudnn);
  if (cst != CUDNN_STATUS_SUCCESS)
    return Unavailable("cuDNN ", cudnn_version, " could not be initialised: ", dnn().GetErrorString(cst));
  ITKIT_CUDNN_CHECK(dnn().SetStream(ctx->cudnn, ctx->stream));
  ITKIT_ASSIGN_OR_RETURN(const CublasApi* blas, Cublas());
  cublasStatus_t bst = blas->Create(&ctx->cublas);
  if (bst != CUBLAS_STATUS_SUCCESS)
    return Unavailable("cuBLAS could not be initialised: ", blas->GetStatusString(bst));
  ctx->blas = blas;
  ITKIT_CUBLAS_CHECK(blas->SetStream(ctx->cublas, ctx->stream));
  // Compute types are passed per call; this only keeps cuBLAS from picking TF32 itself.
  ITKIT_CUBLAS_CHECK(blas->SetMathMode(ctx->cublas, options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  int cublas_version = 0;
  ITKIT_CUBLAS_CHECK(blas->GetVersion(ctx->cublas, &cublas_version));

  ctx->tuning = std::make_unique<TuningCache>(options.tuning_cache_dir);
  auto loaded = ctx->tuning->Load();
  if (!loaded.ok()) LogWarning("CUDA: tuning cache not read: ", loaded.status().message());
  ctx->tuning_tag = StrCat(props.name, "|sm", props.major, props.minor, "|cudnn", cudnn_version);

  LogInfo("CUDA backend: GPU ", ctx->device, " ", props.name, " (sm_", props.major, props.minor, ", ",
          props.totalGlobalMem >> 20, " MiB, ", ctx->num_sms, " SMs), runtime ", RuntimeVersionText(), ", cuDNN ",
          cudnn_version, ", cuBLAS ", cublas_version, "; ", options.fp16 ? "fp16" : "fp32",
          options.allow_tf32 ? " (tf32 allowed)" : "", "; algorithm cache ",
          options.tuning_cache_dir.empty() ? std::string("in memory only")
                                           : StrCat(ctx->tuning->path(), " (", loaded.ok() ? *loaded : 0, " entries)"));
#endif
  return ctx;
}

}  // namespace cuda

DeviceReport QueryDevices() {
  DeviceReport report;
  report.cuda_built = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    report.cuda_unavailable_reason = cuda::DescribeNoCuda(err);
    return report;
  }
  if (count == 0) {
    report.cuda_unavailable_reason = "no CUDA GPU found";
    return report;
  }
  int previous = 0;
  const bool restore = cudaGetDevice(&previous) == cudaSuccess;
  std::string first_problem;
  bool any_usable = false;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp props{};
    if (cudaGetDeviceProperties(&props, i) != cudaSuccess || cudaSetDevice(i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    GpuInfo info;
    info.index = i;
    info.name = props.name;
    info.compute_major = props.major;
    info.compute_minor = props.minor;
    info.total_bytes = props.totalGlobalMem;
    if (cudaMemGetInfo(&info.free_bytes, &info.total_bytes) != cudaSuccess) cudaGetLastError();
    Status usable = cuda::ProbeDevice(i, props);
    if (usable.ok()) {
      any_usable = true;
    } else if (first_problem.empty()) {
      first_problem = usable.message();
    }
    report.gpus.push_back(std::move(info));
  }
  if (restore) cudaSetDevice(previous);
  report.cuda_available = any_usable;
  if (!any_usable) report.cuda_unavailable_reason = first_problem.empty() ? "no usable CUDA GPU" : first_problem;
  return report;
}

Result<std::shared_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& requested) {
  // Escape hatches for the contenders raced against cuDNN's convolution API, honoured
  // by every program (server, pipeline, tests): ITKIT_CUDNN_GRAPH=0 and
  // ITKIT_OWN_KERNELS=library switch them off, e.g. should one misbehave on a GPU
  // they were not yet run on.
  CudaBackendOptions options = requested;
  const char* graph = std::getenv("ITKIT_CUDNN_GRAPH");
  if (graph && std::string(graph) == "0") options.cudnn_graph = CudaBackendOptions::CudnnGraph::kOff;
  const char* own = std::getenv("ITKIT_OWN_KERNELS");
  if (own && std::string(own) == "library") options.own_kernels = CudaBackendOptions::OwnKernels::kLibrary;
  auto ctx = cuda::CudaContext::Create(options);
  if (!ctx.ok()) {
    // Whatever went wrong, callers treat it as "no CUDA here" and use the CPU.
    const Status& s = ctx.status();
    if (s.code() == StatusCode::kUnavailable) return s;
    return Unavailable("the CUDA backend could not start: ", s.ToString());
  }
  return cuda::MakeCudaBackend(std::move(ctx).value());
}

}  // namespace itkit
