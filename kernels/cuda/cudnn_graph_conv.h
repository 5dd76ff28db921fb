// Forward convolutions through cuDNN's graph ("backend") API: the engines cuDNN's
// heuristic proposes for one convolution, as a second set of contenders beside the
// convolution API's algorithms (conv_cudnn.cu). PyTorch reaches cuDNN through this API;
// the convolution API exposes a fixed subset of engines, and at batch 4 in TF32 it
// picked one 4.5x slower than the same convolution at batch 1 (docs/PERFORMANCE.md).
//
// Written without a GPU at hand: every call's status is checked and turned into a
// Status naming the call, so whatever cuDNN refuses leaves the convolution API's
// algorithm in place (the race in RaceGraphConv never picks a plan that failed, or
// whose output differs from the convolution API's).
#pragma once

#include <cudnn.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "itkit/cuda_backend.h"  // CudnnGraphExecutions

namespace itkit::cuda {

// One forward convolution (cross-correlation, groups 1) as the graph API describes it.
struct GraphConvSpec {
  cudnnDataType_t data = CUDNN_DATA_FLOAT;  // X, W and Y; accumulation is always f32
  bool allow_tensor_cores = true;           // f32 data: false keeps TF32 engines out
  int64_t n = 0, cin = 0, cout = 0;
  std::vector<int64_t> in, out, kernel, pads, strides, dilations;  // per spatial axis (2 or 3)
  // X, Y NDHWC and W [K][k...][C]; otherwise NCDHW and W [K][C][k...].
  bool channels_last = false;
};

// Owns one backend descriptor.
class BackendDescriptor {
 public:
  BackendDescriptor() = default;
  ~BackendDescriptor();
  BackendDescriptor(BackendDescriptor&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  BackendDescriptor& operator=(BackendDescriptor&& o) noexcept;
  BackendDescriptor(const BackendDescriptor&) = delete;
  BackendDescriptor& operator=(const BackendDescriptor&) = delete;
  static Result<BackendDescriptor> Create(cudnnBackendDescriptorType_t type);
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

class GraphConvSearch;

// A finalized execution plan for one engine configuration.
class GraphConvPlan {
 public:
  size_t workspace_bytes() const { return workspace_; }
  int64_t engine() const { return engine_; }  // cuDNN's global engine index (for logs)
  // y = conv(x, w) on the handle's stream. InvalidArgument (nothing run) for a pointer
  // not 16-byte aligned.
  Status Execute(cudnnHandle_t handle, const void* x, const void* w, void* y, void* workspace) const;

 private:
  friend class GraphConvSearch;
  std::shared_ptr<const GraphConvSearch> search_;  // keeps the graph the plan refers to
  BackendDescriptor plan_;
  size_t workspace_ = 0;
  int64_t engine_ = -1;
  // The variant pack of the last pointers: a plan runs on the same arena addresses
  // every window, so the pack is built once, not per call.
  mutable BackendDescriptor pack_;
  mutable const void* pack_pointers_[4] = {nullptr, nullptr, nullptr, nullptr};
};


// The operation graph of one convolution and the engine configurations cuDNN's
// heuristic (mode A) proposes for it, in its order, less those our numerics forbid:
// f32 inputs converted down to f16, reduced-precision accumulation, tensor cores (TF32)
// for strict FP32, and engines compiled at run time (their compilation would make the
// first inference after a restart slow).
class GraphConvSearch : public std::enable_shared_from_this<GraphConvSearch> {
 public:
  static Result<std::shared_ptr<GraphConvSearch>> Create(cudnnHandle_t handle, const GraphConvSpec& spec);
  size_t candidates() const { return configs_.size(); }
  // The plan for candidate `i`; Unsupported where cuDNN refuses to finalize it.
  Result<std::unique_ptr<GraphConvPlan>> Plan(size_t i) const;

 private:
  GraphConvSearch() = default;
  cudnnHandle_t handle_ = nullptr;
  std::vector<BackendDescriptor> tensors_;  // X, W, Y
  BackendDescriptor conv_, op_, graph_, heuristic_;
  std::vector<BackendDescriptor> configs_;
  std::vector<int64_t> engines_;  // global index per config
};

using LegacyConv = std::function<Status(const void* x, const void* w, void* y, void* workspace)>;

// A graph-API plan for the convolution, or null where the convolution API's algorithm
// (`legacy`, whose workspace is `legacy_workspace`) should run: per
// ctx.options.cudnn_graph, the race's verdict, read from the tuning cache under `key`
// (algo = the winning candidate + 1 or 0 for the convolution API, math = cuDNN's
// engine index) or raced now and recorded. Never fails: whatever goes wrong is logged
// and leaves the convolution API.
std::unique_ptr<GraphConvPlan> SelectGraphConvPlan(CudaContext& ctx, const GraphConvSpec& spec, const std::string& key,
                                                   const LegacyConv& legacy, size_t legacy_workspace);

}  // namespace itkit::cuda
