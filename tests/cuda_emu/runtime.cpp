// The CUDA runtime API the backend calls, emulated on the host (tests/cuda_emu/README.md):
// the emulated backend links this instead of libcudart. Work runs at once on the
// calling thread (streams order nothing further); stream capture records launches,
// copies and fills and a graph replays them. What the real runtime would refuse is
// refused: launch configurations beyond the device's limits, dynamic shared memory
// beyond the kernel's opt-in, copies whose direction contradicts where the pointers
// live, calls prohibited during a stream capture (which they invalidate). Device allocations end at a page boundary followed by an inaccessible page,
// so a kernel reading or writing past the end of a buffer faults instead of passing.
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "itkit_emu/core.h"
#include "itkit_emu/launch.h"

namespace itkit_emu {
namespace {

constexpr int kSharedOptIn = 227 * 1024;  // H100's per-block opt-in
constexpr int kSharedDefault = 48 * 1024;
constexpr size_t kDeviceMemory = size_t{80} << 30;  // an H100's

enum class Where { kDevice, kPinnedHost };
struct Allocation {
  size_t bytes;
  Where where;
  void* mapping;  // what munmap gets back (device) or free() (host)
  size_t mapping_bytes;
};

struct GraphState {
  std::vector<std::function<void()>> work;
};
struct StreamState {
  bool capturing = false;
  bool invalidated = false;  // a prohibited call during the capture (EndCapture then fails)
  GraphState* graph = nullptr;
};
struct EventState {
  std::chrono::steady_clock::time_point at;
};

// One launch at a time (blocks share `static` shared variables); recursive because
// work may run inside the call that enqueues it.
std::recursive_mutex g_mutex;
std::map<uintptr_t, Allocation> g_allocations;
size_t g_device_live = 0;
std::map<const void*, int> g_shared_opt_in;
cudaError_t g_last_error = cudaSuccess;
StreamState g_legacy_stream;

size_t PageBytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// cudaGetLastError's answer, cleared: also what a synchronising call reports (a kernel
// failure shows at the first one after it, as on the GPU).
cudaError_t TakeLastError() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

StreamState& StateOf(cudaStream_t s) { return s ? *reinterpret_cast<StreamState*>(s) : g_legacy_stream; }

cudaError_t Record(cudaError_t e) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

// The allocation holding [p, p + bytes), if any (callers hold g_mutex).
const Allocation* Find(const void* p, size_t bytes, Where where) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocations.upper_bound(a);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  if (it->second.where != where || a + bytes > it->first + it->second.bytes) return nullptr;
  return &it->second;
}
bool OnDevice(const void* p, size_t bytes) { return Find(p, bytes == 0 ? 1 : bytes, Where::kDevice) != nullptr; }

void Complain(const std::string& what) { std::fprintf(stderr, "itkit_emu: %s\n", what.c_str()); }

// Whether a copy in direction `kind` fits where the pointers live, each range (the
// bytes it spans from `dst` and from `src`) inside one allocation where it is device memory.
cudaError_t CheckCopy(void* dst, size_t dst_bytes, const void* src, size_t src_bytes, cudaMemcpyKind kind,
                      const char* call) {
  const bool dst_dev = OnDevice(dst, dst_bytes), src_dev = OnDevice(src, src_bytes);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_dev && !src_dev; break;
    case cudaMemcpyDeviceToHost: ok = src_dev && !dst_dev; break;
    case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
    case cudaMemcpyHostToHost: ok = !dst_dev && !src_dev; break;
    default: break;  // cudaMemcpyDefault: wherever they are
  }
  if (ok) return cudaSuccess;
  Complain(std::string(call) + ": " + std::to_string(dst_bytes) + " bytes, kind " + std::to_string(kind) +
           ", but the destination is " + (dst_dev ? "" : "not ") + "device memory and the source is " +
           (src_dev ? "" : "not ") + "device memory (or a range leaves its allocation)");
  return cudaErrorInvalidValue;
}

// Runs `work` now, or appends it to the graph the stream is capturing.
cudaError_t Enqueue(cudaStream_t stream, std::function<void()> work) {
  StreamState& s = StateOf(stream);
  if (s.capturing) {
    s.graph->work.push_back(std::move(work));
    return cudaSuccess;
  }
  work();
  return cudaSuccess;
}

// The stream this thread is capturing (cudaStreamCaptureModeThreadLocal: only this
// thread's calls are restricted).
thread_local StreamState* g_capturing = nullptr;

// A call CUDA prohibits while the calling thread captures (allocation, synchronisation,
// synchronous copies): it fails and invalidates the capture, as on the GPU.
bool ProhibitedDuringCapture(const char* call) {
  if (!g_capturing) return false;
  g_capturing->invalidated = true;
  Complain(std::string(call) + " during stream capture: the capture is invalidated");
  return true;
}

}  // namespace

void Launch(const void* kernel, const char* name, dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t stream,
            std::function<void()> body) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || block.z > 64 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    Complain(std::string(name) + ": invalid launch configuration");
    Record(cudaErrorInvalidConfiguration);
    return;
  }
  auto opt_in = g_shared_opt_in.find(kernel);
  const size_t allowed = opt_in == g_shared_opt_in.end() ? kSharedDefault : static_cast<size_t>(opt_in->second);
  if (dynamic_shared > allowed) {
    Complain(std::string(name) + ": " + std::to_string(dynamic_shared) + " bytes of dynamic shared memory, " +
             std::to_string(allowed) + " allowed (cudaFuncSetAttribute)");
    Record(cudaErrorInvalidValue);
    return;
  }
  std::string kernel_name = name;
  Enqueue(stream, [kernel_name, grid, block, dynamic_shared, body = std::move(body)] {
    std::lock_guard<std::recursive_mutex> relock(g_mutex);  // when a graph replays it
    std::string error;
    if (!RunGrid(kernel_name.c_str(), grid, block, dynamic_shared, body, &error)) {
      Complain("kernel failed: " + error);
      Record(cudaErrorLaunchFailure);
    }
  });
}

}  // namespace itkit_emu

using namespace itkit_emu;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : Record(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

// An H100-like device; ITKIT_CUDA_EMU_SMS sets the multiprocessor count (grid sizes).
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return Record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "ITKIT CUDA emulator (sm_90)");
  prop->major = 9;
  prop->minor = 0;
  const char* sms = std::getenv("ITKIT_CUDA_EMU_SMS");
  prop->multiProcessorCount = sms ? std::max(1, std::atoi(sms)) : 132;
  prop->totalGlobalMem = kDeviceMemory;
  prop->sharedMemPerBlock = kSharedDefault;
  prop->sharedMemPerBlockOptin = kSharedOptIn;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return Record(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = kSharedOptIn; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: {
      cudaDeviceProp p;
      cudaGetDeviceProperties(&p, 0);
      *value = p.multiProcessorCount;
      return cudaSuccess;
    }
    default: *value = 0; return cudaSuccess;
  }
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  *total = kDeviceMemory;
  *free_bytes = *total - std::min(*total, g_device_live);
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > kSharedOptIn) return Record(cudaErrorInvalidValue);
    g_shared_opt_in[func] = value;
  }
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void*) {
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) { return TakeLastError(); }
cudaError_t cudaPeekAtLastError(void) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  return g_last_error;
}
const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaError (emulated)";
  }
}
const char* cudaGetErrorString(cudaError_t error) { return cudaGetErrorName(error); }

cudaError_t cudaDeviceSynchronize(void) {
  if (ProhibitedDuringCapture("cudaDeviceSynchronize")) return Record(cudaErrorStreamCaptureUnsupported);
  return TakeLastError();
}

// ---- memory ----------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ProhibitedDuringCapture("cudaMalloc")) return Record(cudaErrorStreamCaptureUnsupported);
  const size_t page = PageBytes();
  const size_t used = RoundUp(std::max<size_t>(bytes, 1), 256);  // cudaMalloc's 256-byte alignment
  const size_t data_pages = RoundUp(used, page);
  void* map = mmap(nullptr, data_pages + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    *ptr = nullptr;
    return Record(cudaErrorMemoryAllocation);
  }
  char* guard = static_cast<char*>(map) + data_pages;
  mprotect(guard, page, PROT_NONE);
  char* data = guard - used;
  std::memset(data, 0xff, used);  // garbage, as fresh device memory is: NaN as f32 and f16, -1 as integers
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  // Ranges are checked against what was asked for, not the 256-byte rounding.
  g_allocations[reinterpret_cast<uintptr_t>(data)] =
      Allocation{std::max<size_t>(bytes, 1), Where::kDevice, map, data_pages + page};
  g_device_live += used;
  *ptr = data;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ProhibitedDuringCapture("cudaFree")) return Record(cudaErrorStreamCaptureUnsupported);
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  auto it = g_allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_allocations.end() || it->second.where != Where::kDevice) {
    Complain("cudaFree of a pointer cudaMalloc did not return");
    return Record(cudaErrorInvalidValue);
  }
  g_device_live -= RoundUp(it->second.bytes, 256);
  munmap(it->second.mapping, it->second.mapping_bytes);
  g_allocations.erase(it);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) {
  if (ProhibitedDuringCapture("cudaHostAlloc")) return Record(cudaErrorStreamCaptureUnsupported);
  void* p = std::aligned_alloc(4096, RoundUp(std::max<size_t>(bytes, 1), 4096));
  if (!p) return Record(cudaErrorMemoryAllocation);
  std::memset(p, 0xff, bytes);  // NaN until written, as the device memory above
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  g_allocations[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, Where::kPinnedHost, p, bytes};
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, 0); }
cudaError_t cudaFreeHost(void* ptr) {
  if (ProhibitedDuringCapture("cudaFreeHost")) return Record(cudaErrorStreamCaptureUnsupported);
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  auto it = g_allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_allocations.end() || it->second.where != Where::kPinnedHost) return Record(cudaErrorInvalidValue);
  std::free(it->second.mapping);
  g_allocations.erase(it);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  std::memset(attr, 0, sizeof *attr);
  if (OnDevice(ptr, 1)) {
    attr->type = cudaMemoryTypeDevice;
    attr->devicePointer = const_cast<void*>(ptr);
  } else if (Find(ptr, 1, Where::kPinnedHost)) {
    attr->type = cudaMemoryTypeHost;
    attr->hostPointer = const_cast<void*>(ptr);
  } else {
    attr->type = cudaMemoryTypeUnregistered;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = CheckCopy(dst, bytes, src, bytes, kind, "cudaMemcpy"); e != cudaSuccess) return Record(e);
  return Enqueue(stream, [=] { std::memmove(dst, src, bytes); });
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (ProhibitedDuringCapture("cudaMemcpy")) return Record(cudaErrorStreamCaptureUnsupported);
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dpitch || width > spitch) return Record(cudaErrorInvalidValue);
  const size_t dst_span = dpitch * (height - 1) + width, src_span = spitch * (height - 1) + width;
  if (const cudaError_t e = CheckCopy(dst, dst_span, src, src_span, kind, "cudaMemcpy2D"); e != cudaSuccess)
    return Record(e);
  return Enqueue(stream, [=] {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  });
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (bytes == 0) return cudaSuccess;
  if (!OnDevice(ptr, bytes)) {
    Complain("cudaMemset outside a device allocation");
    return Record(cudaErrorInvalidValue);
  }
  return Enqueue(stream, [=] { std::memset(ptr, value, bytes); });
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (ProhibitedDuringCapture("cudaMemset")) return Record(cudaErrorStreamCaptureUnsupported);
  return cudaMemsetAsync(ptr, value, bytes, nullptr);
}

// ---- streams, events, graphs -------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(new StreamState());
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<StreamState*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (ProhibitedDuringCapture("cudaStreamSynchronize")) return Record(cudaErrorStreamCaptureUnsupported);
  return TakeLastError();
}
cudaError_t cudaStreamQuery(cudaStream_t) {
  if (ProhibitedDuringCapture("cudaStreamQuery")) return Record(cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  *event = reinterpret_cast<cudaEvent_t>(new EventState{std::chrono::steady_clock::now()});
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<EventState*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto* e = reinterpret_cast<EventState*>(event);
  return Enqueue(stream, [e] { e->at = std::chrono::steady_clock::now(); });
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (ProhibitedDuringCapture("cudaEventSynchronize")) return Record(cudaErrorStreamCaptureUnsupported);
  return TakeLastError();
}
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  const auto* a = reinterpret_cast<EventState*>(start);
  const auto* b = reinterpret_cast<EventState*>(end);
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (!stream) return Record(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot be captured
  StreamState& s = StateOf(stream);
  if (s.capturing || g_capturing) return Record(cudaErrorIllegalState);
  s.capturing = true;
  s.invalidated = false;
  s.graph = new GraphState();
  g_capturing = &s;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  StreamState& s = StateOf(stream);
  if (!s.capturing) return Record(cudaErrorIllegalState);
  s.capturing = false;
  if (g_capturing == &s) g_capturing = nullptr;
  if (s.invalidated) {
    delete s.graph;
    s.graph = nullptr;
    *graph = nullptr;
    return Record(cudaErrorStreamCaptureInvalidated);
  }
  *graph = reinterpret_cast<cudaGraph_t>(s.graph);
  s.graph = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = reinterpret_cast<cudaGraphExec_t>(new GraphState(*reinterpret_cast<GraphState*>(graph)));
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (StateOf(stream).capturing) return Record(cudaErrorStreamCaptureUnsupported);
  for (const auto& work : reinterpret_cast<GraphState*>(exec)->work) work();
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<GraphState*>(exec);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<GraphState*>(graph);
  return cudaSuccess;
}

}  // extern "C"
