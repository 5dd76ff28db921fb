// The backend interface (after ggml): a backend says which nodes it can run and
// compiles a kernel per node for a fixed signature (dtypes + shapes). The session's
// scheduler gives each node to the first backend that supports it, falls back to the
// CPU otherwise, and inserts copies where values cross devices.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "itkit/graph.h"
#include "itkit/shape_inference.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit {

class ThreadPool;

// A node with everything known at plan time: input/output dtypes and shapes, and
// the host values of constant inputs (weights) so kernels can prepack them.
struct NodeSignature {
  const Node* node = nullptr;
  std::vector<ValueDesc> inputs;   // dtype kUndefined for an omitted optional input
  std::vector<ValueDesc> outputs;
  int64_t opset = 0;
};

struct KernelContext {
  std::vector<const Tensor*> inputs;  // nullptr for omitted optional inputs
  std::vector<Tensor*> outputs;       // allocated by the session with planned shapes
  ThreadPool* pool = nullptr;         // CPU backends
  void* workspace = nullptr;          // workspace_bytes() of scratch, 64-byte aligned
  size_t workspace_bytes = 0;
};

class OpKernel {
 public:
  virtual ~OpKernel() = default;
  virtual Status Run(KernelContext& ctx) = 0;
  // Scratch memory the kernel wants per run; the planner places it in the arena.
  virtual size_t workspace_bytes() const { return 0; }
};

// Device memory owned by a backend.
struct DeviceBuffer {
  std::shared_ptr<void> owner;
  void* data = nullptr;
  size_t bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual DeviceKind device() const = 0;

  // Whether this backend can run the node with these dtypes/shapes; `reason` (if
  // given) receives why not, for the placement log.
  virtual bool Supports(const NodeSignature& sig, std::string* reason) const = 0;
  virtual Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) = 0;

  virtual Result<DeviceBuffer> Allocate(size_t bytes) = 0;
  // Host <-> device copies of whole tensors with equal dtype and size.
  virtual Status CopyFromHost(const Tensor& host, Tensor& device) = 0;
  virtual Status CopyToHost(const Tensor& device, Tensor& host) = 0;
  virtual Status Synchronize() { return Status::Ok(); }
};

}  // namespace itkit
