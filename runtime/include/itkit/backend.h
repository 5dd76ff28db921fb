// The backend interface (after ggml): a backend says which nodes it can run and
// compiles a kernel per node for a fixed signature (dtypes + shapes). The session's
// scheduler gives each node to the first backend that supports it, falls back to the
// CPU otherwise, and inserts copies where values cross devices.
#pragma once

#include <cstddef>
#include <cstdlib>
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
  // An input whose memory output 0 may take over when nothing reads that input later
  // (same dtype, layout and size), or -1. The kernel must then be correct with the two
  // the same memory: reading each element before writing it, or checking for it.
  virtual int in_place_input() const { return -1; }
  // False for a constant input the kernel keeps its own copy of (prepacked at creation):
  // the planner then neither uploads it nor passes it (nullptr in KernelContext::inputs).
  virtual bool reads_input_at_run(size_t /*input*/) const { return true; }
};

// Steps recorded by Backend::BeginRecording/EndRecording, replayed as one unit.
class StepRecording {
 public:
  virtual ~StepRecording() = default;
  virtual Status Replay() = 0;
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
  // Host memory that copies to and from this backend are fastest with (page-locked for
  // CUDA: the DMA reads it directly, no staging). A copy from it may still be in flight
  // when CopyFromHost returns: keep it unchanged until Synchronize() (a session run
  // synchronises before returning). Default: ordinary host memory.
  virtual Result<DeviceBuffer> AllocateHost(size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* data = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!data) return OutOfMemory("host buffer of ", bytes, " bytes");
    return DeviceBuffer{std::shared_ptr<void>(data, [](void* p) { std::free(p); }), data, bytes};
  }
  // Host <-> device copies of whole tensors with equal dtype and size.
  virtual Status CopyFromHost(const Tensor& host, Tensor& device) = 0;
  virtual Status CopyToHost(const Tensor& device, Tensor& host) = 0;
  virtual Status Synchronize() { return Status::Ok(); }
  // A copy within this backend's memory, in order with its kernels. The session uses
  // it to take graph inputs handed over on the device into the plan's own buffers (so
  // recorded steps always read the same addresses).
  virtual Status CopyOnDevice(const Tensor& from, Tensor& to) {
    (void)from;
    (void)to;
    return Unsupported(name(), " has no device-to-device copy");
  }
  // A host -> device copy that may run beside the backend's kernels (CUDA: a second
  // stream); work issued after WaitForUploads() sees every upload started before it.
  // The host memory must stay unchanged until then. Default: CopyFromHost.
  virtual Status UploadAsync(const Tensor& host, Tensor& device) { return CopyFromHost(host, device); }
  virtual Status WaitForUploads() { return Status::Ok(); }

  // Storage precision. A backend answering true gets the f32 values of the nodes it
  // runs stored as f16 where the op tolerates f16 storage (runtime/session/
  // precision.cpp); its kernels then see f16 signatures and compute in f32. The
  // planner inserts the Casts at the edges (CPU nodes, graph outputs).
  virtual bool prefers_half_storage() const { return false; }

  // Storage layout. A backend answering true is offered each node's channels-last
  // form first (itkit/channels_last.h: data inputs/outputs stored [N, D, H, W, C]);
  // the planner inserts the Transposes where channels-last and row-major values meet
  // (CPU nodes, graph outputs, ops without the form). A backend must decline every
  // channels-last signature it does not run as such.
  virtual bool prefers_channels_last() const { return false; }

  // Recording (CUDA Graphs): a run of consecutive kernel steps on this backend is
  // recorded once and replayed as one launch on later runs. Kernels must then issue
  // only device work on the backend's stream, from addresses fixed per plan. A
  // failed recording is not an error: the session runs those steps one by one again.
  virtual bool CanRecord() const { return false; }
  virtual Status BeginRecording() { return Unsupported(name(), " cannot record steps"); }
  // Ends the recording (also after a failed step) and returns what was recorded.
  virtual Result<std::unique_ptr<StepRecording>> EndRecording() {
    return Unsupported(name(), " cannot record steps");
  }
};

}  // namespace itkit
