// Our kernel against the library's for one node, at plan time (own_kernels.cuh): the
// outputs are compared on the device (two numbers come back), then both are timed with
// events on the backend's stream.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cuda/own_kernels.cuh"

namespace itkit::cuda {
namespace {

__device__ __forceinline__ uint32_t Hash(uint32_t v) {  // a 32-bit integer mix (lowbias32)
  v ^= v >> 16;
  v *= 0x7feb352dU;
  v ^= v >> 15;
  v *= 0x846ca68bU;
  v ^= v >> 16;
  return v;
}

template <typename T>
__global__ void FillKernel(T* data, int64_t count, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = Hash(static_cast<uint32_t>(i) ^ Hash(seed + static_cast<uint32_t>(i >> 32)));
    data[i] = FromF<T>(static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

// out[0] = max |a - b| and out[1] = max |b| as float bits (atomicMax on the bits of
// non-negative floats orders them as floats; a NaN's bits exceed every finite value's,
// so a NaN anywhere shows as a NaN difference).
template <typename T>
__global__ void MaxDiffKernel(const T* a, const T* b, int64_t count, unsigned* out) {
  float diff = 0.0f, scale = 0.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float va = ToF(a[i]), vb = ToF(b[i]);
    const float d = fabsf(va - vb);
    diff = d != d || d > diff ? d : diff;  // keeps a NaN
    scale = fmaxf(scale, fabsf(vb));
  }
  atomicMax(&out[0], __float_as_uint(fabsf(diff)));
  atomicMax(&out[1], __float_as_uint(scale));
}

}  // namespace

Status FillPseudoRandom(const CudaContext& ctx, __half* data, int64_t count, uint32_t seed) {
  FillKernel<__half><<<GridFor(count, ctx), kThreads, 0, ctx.stream>>>(data, count, seed);
  ITKIT_CUDA_CHECK_LAUNCH("FillKernel");
  return Status::Ok();
}

Status FillPseudoRandom(const CudaContext& ctx, float* data, int64_t count, uint32_t seed) {
  FillKernel<float><<<GridFor(count, ctx), kThreads, 0, ctx.stream>>>(data, count, seed);
  ITKIT_CUDA_CHECK_LAUNCH("FillKernel");
  return Status::Ok();
}

Result<OutputDifference> CompareOutputs(CudaContext& ctx, const void* library_out, const void* own_out, bool half,
                                        int64_t count, double tolerance) {
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer maxima, ctx.Allocate(2 * sizeof(unsigned)));
  ITKIT_CUDA_CHECK(cudaMemsetAsync(maxima.data, 0, 2 * sizeof(unsigned), ctx.stream));
  auto* out = static_cast<unsigned*>(maxima.data);
  if (half) {
    MaxDiffKernel<__half><<<GridFor(count, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const __half*>(own_out), static_cast<const __half*>(library_out), count, out);
  } else {
    MaxDiffKernel<float><<<GridFor(count, ctx), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(own_out), static_cast<const float*>(library_out), count, out);
  }
  ITKIT_CUDA_CHECK_LAUNCH("MaxDiffKernel");
  unsigned bits[2] = {0, 0};
  ITKIT_RETURN_IF_ERROR(ctx.Download(bits, maxima.data, sizeof(bits)));
  float diff = 0, scale = 0;
  std::memcpy(&diff, &bits[0], sizeof(float));
  std::memcpy(&scale, &bits[1], sizeof(float));
  OutputDifference d;
  d.max_abs_diff = diff;
  d.max_abs_library = scale;
  d.agree = std::isfinite(diff) && diff <= tolerance * std::max(static_cast<double>(scale), 1e-3);
  return d;
}

Result<double> BestTimeMs(CudaContext& ctx, const std::function<Status()>& run, int repeats) {
  struct Events {  // destroyed on every return path
    cudaEvent_t e[2] = {nullptr, nullptr};
    ~Events() {
      for (cudaEvent_t ev : e)
        if (ev) (void)cudaEventDestroy(ev);  // nothing left to report to at this point
    }
  } events;
  cudaEvent_t* marks = events.e;
  for (int i = 0; i < 2; ++i) ITKIT_CUDA_CHECK(cudaEventCreate(&marks[i]));
  double best_ms = 1e30;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    ITKIT_CUDA_CHECK(cudaEventRecord(marks[0], ctx.stream));
    ITKIT_RETURN_IF_ERROR(run());
    ITKIT_CUDA_CHECK(cudaEventRecord(marks[1], ctx.stream));
    ITKIT_CUDA_CHECK(cudaEventSynchronize(marks[1]));
    float ms = 0;
    ITKIT_CUDA_CHECK(cudaEventElapsedTime(&ms, marks[0], marks[1]));
    best_ms = std::min(best_ms, static_cast<double>(ms));
  }
  return best_ms;
}

Result<KernelRace> RaceOwnKernel(CudaContext& ctx, const std::function<Status()>& library,
                                 const std::function<Status()>& own, const __half* library_out,
                                 const __half* own_out, int64_t count, double tolerance, int repeats) {
  ITKIT_RETURN_IF_ERROR(ctx.Activate());
  KernelRace race;
  // Correctness first: a kernel that disagrees is never timed into use.
  ITKIT_RETURN_IF_ERROR(library());
  ITKIT_RETURN_IF_ERROR(own());
  ITKIT_ASSIGN_OR_RETURN(race.output, CompareOutputs(ctx, library_out, own_out, true, count, tolerance));
  ITKIT_ASSIGN_OR_RETURN(race.library_ms, BestTimeMs(ctx, library, repeats));
  ITKIT_ASSIGN_OR_RETURN(race.own_ms, BestTimeMs(ctx, own, repeats));
  return race;
}

}  // namespace itkit::cuda
