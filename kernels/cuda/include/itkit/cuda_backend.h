// Extras of the CUDA backend beyond the generic Backend interface (itkit/backend.h):
// device-memory statistics for benchmarks and /metrics. Created through
// itkit/devices.h: CreateCudaBackend(). Only present in builds with ITKIT_HAVE_CUDA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "itkit/backend.h"
#include "itkit/status.h"

namespace itkit::cuda {

struct CudaMemoryStats {
  size_t live_bytes = 0;    // held by this backend now (arenas, uploaded weights, prepacked filters)
  size_t peak_bytes = 0;    // most ever held at once since creation / the last ResetPeak
  size_t device_free = 0;   // cudaMemGetInfo: whole device, every process
  size_t device_total = 0;
  std::string device_name;
};

// InvalidArgument when `backend` is not a CUDA backend.
Result<CudaMemoryStats> GetMemoryStats(const Backend& backend);
Status ResetPeakMemory(const Backend& backend);

// Convolutions run through cuDNN's graph API in this process so far (all backends):
// benchmarks report it, and the op tests check that the graph path ran at all.
int64_t CudnnGraphExecutions();

}  // namespace itkit::cuda
