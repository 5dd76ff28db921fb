// Device queries for a build without the CUDA backend (ITKIT_CUDA=OFF or no nvcc).
// With the CUDA backend, kernels/cuda/devices.cu provides these instead.
#ifndef ITKIT_HAVE_CUDA
#include "itkit/devices.h"

namespace itkit {

DeviceReport QueryDevices() {
  DeviceReport report;
  report.cuda_unavailable_reason = "this build has no CUDA backend (built with ITKIT_CUDA=OFF or without nvcc)";
  return report;
}

Result<std::shared_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions&) {
  return Unavailable("this build has no CUDA backend (built with ITKIT_CUDA=OFF or without nvcc)");
}

}  // namespace itkit
#endif
