// Which compute devices exist, and backends for them. Without a CUDA build or
// without a usable GPU/driver, CUDA reports unavailable and everything runs on the
// CPU: callers log the reason, never crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "itkit/backend.h"
#include "itkit/status.h"

namespace itkit {

struct GpuInfo {
  int index = 0;
  std::string name;
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  int compute_major = 0, compute_minor = 0;
};

struct DeviceReport {
  bool cuda_built = false;        // compiled with the CUDA backend
  bool cuda_available = false;    // built, driver present and at least one device
  std::string cuda_unavailable_reason;
  std::vector<GpuInfo> gpus;
};

// Cheap enough to call per /api/info request.
DeviceReport QueryDevices();

struct CudaBackendOptions {
  int device = 0;
  bool fp16 = false;
  bool allow_tf32 = false;
  std::string tuning_cache_dir;  // on-disk cuDNN algorithm cache ("" = memory only)
  // Time every cuDNN algorithm once per convolution shape (cached); false = take
  // cuDNN's heuristic first choice (faster planning, e.g. for tests).
  bool autotune = true;
  // Largest cuDNN workspace one convolution may use (it lives in the plan's arena).
  size_t max_workspace_bytes = size_t{1} << 30;
  // With fp16: values produced and consumed on the GPU are stored as f16 between
  // kernels (Backend::prefers_half_storage); false = f32 between kernels, f16 only
  // inside convolutions.
  bool half_storage = true;
  // Record runs of kernel steps as CUDA Graphs on a plan's second run and replay
  // them (one launch instead of one per kernel); see Backend::CanRecord.
  bool cuda_graphs = true;
  // With fp16: values between GPU kernels are stored channels-last (NDHWC), the layout
  // cuDNN's FP16 convolutions run in (Backend::prefers_channels_last); false = NCDHW,
  // with a transpose on each side of every convolution.
  bool channels_last = true;
  // Forward convolutions (without Z) and cuDNN's graph API: kRace times its engines
  // against the convolution API's algorithm once per shape at plan time (needs autotune;
  // cached) and runs the faster where its output agrees; kOff = the convolution API
  // only; kFirst = the heuristic's first usable engine without a race (tests).
  enum class CudnnGraph { kOff, kRace, kFirst };
  CudnnGraph cudnn_graph = CudnnGraph::kRace;
  // Where one of our kernels and cuDNN both implement a node (so far: ConvTranspose
  // whose kernel equals its stride, and the 3x3x3 32 -> 32 convolution, on f16
  // channels-last data): kAuto races them once
  // per shape at plan time (needs autotune; cached like cuDNN's algorithms) and keeps
  // ours only if it agrees with cuDNN's output and is faster; kLibrary never uses ours;
  // kOwn always does (tests, ablations).
  enum class OwnKernels { kAuto, kLibrary, kOwn };
  OwnKernels own_kernels = OwnKernels::kAuto;
};

// Unavailable (with the reason) when there is no CUDA build, driver or device.
Result<std::shared_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

// The CPU with f16 storage between its kernels (Backend::prefers_half_storage) and
// f32 math: the numerics of the CUDA backend's FP16 storage, on any machine. For
// tests (`itkit_onnx_test_runner --device cpu-f16`) and for checking a model's FP16
// accuracy without a GPU; slower than the plain CPU (every f16 kernel converts).
std::shared_ptr<Backend> CreateHalfStorageCpuBackend();

// The CPU with channels-last storage between its kernels (Backend::prefers_channels_last),
// optionally over f16 storage: the CUDA backend's FP16 planning (layouts, Transposes,
// Casts) on any machine. Each channels-last kernel converts its data to row-major and
// back, so this is for tests (`itkit_onnx_test_runner --device cpu-cl|cpu-f16-cl`).
std::shared_ptr<Backend> CreateChannelsLastCpuBackend(bool half_storage);

}  // namespace itkit
