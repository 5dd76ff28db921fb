// GatherWindows (itkit/cuda_window_gather.h): one launch per up to kWindowsPerLaunch
// windows; one thread per batch element in a grid-stride loop, so writes are
// contiguous and each window row is read as one contiguous run of the volume.
#include <algorithm>

#include "cuda/common.cuh"
#include "itkit/cuda_window_gather.h"

namespace itkit::cuda {
namespace {

constexpr int kWindowsPerLaunch = 64;  // 1.5 KB of origins: well inside the parameter space

struct GatherArgs {
  int64_t C, D, H, W;     // volume
  int64_t pz, py, px;     // window
  int windows;            // origins used in this launch
  int64_t origin[kWindowsPerLaunch][3];
};

template <typename T>
__global__ void GatherWindowsKernel(const T* __restrict__ volume, T* __restrict__ batch, GatherArgs a, T outside) {
  const int64_t window_elems = a.C * a.pz * a.py * a.px;
  const int64_t n = window_elems * a.windows;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = i % a.px, y = (i / a.px) % a.py, z = (i / (a.px * a.py)) % a.pz;
    const int64_t c = (i / (a.px * a.py * a.pz)) % a.C, b = i / window_elems;
    const int64_t vz = a.origin[b][0] + z, vy = a.origin[b][1] + y, vx = a.origin[b][2] + x;
    const bool inside = vz >= 0 && vz < a.D && vy >= 0 && vy < a.H && vx >= 0 && vx < a.W;
    batch[i] = inside ? volume[((c * a.D + vz) * a.H + vy) * a.W + vx] : outside;
  }
}

}  // namespace

Status GatherWindows(const Backend& backend, const Tensor& volume, const std::vector<std::array<int64_t, 3>>& origins,
                     Tensor& batch, float outside) {
  std::shared_ptr<CudaContext> ctx = ContextOf(backend);
  if (!ctx) return InvalidArgument("GatherWindows: backend '", backend.name(), "' is not a CUDA backend");
  const Shape& v = volume.shape();
  const Shape& s = batch.shape();
  if (v.size() != 3 && v.size() != 4)
    return InvalidArgument("GatherWindows: volume must be [C, D, H, W] or [D, H, W], got ", ShapeToString(v));
  const int64_t C = v.size() == 4 ? v[0] : 1;
  const size_t off = v.size() - 3;
  if (s.size() != 5 || s[1] != C)
    return InvalidArgument("GatherWindows: batch must be [B, ", C, ", pz, py, px], got ", ShapeToString(s));
  if (volume.dtype() != batch.dtype() || !IsF32OrF16(volume.dtype()))
    return InvalidArgument("GatherWindows: volume and batch must both be f32 or both f16");
  if (volume.device() != DeviceKind::kCuda || batch.device() != DeviceKind::kCuda)
    return InvalidArgument("GatherWindows: volume and batch must be on the GPU");
  if (static_cast<int64_t>(origins.size()) > s[0])
    return InvalidArgument("GatherWindows: ", origins.size(), " origins for a batch of ", s[0]);
  ITKIT_RETURN_IF_ERROR(ctx->Activate());
  GatherArgs a{};
  a.C = C;
  a.D = v[off];
  a.H = v[off + 1];
  a.W = v[off + 2];
  a.pz = s[2];
  a.py = s[3];
  a.px = s[4];
  const int64_t window_elems = C * a.pz * a.py * a.px;
  for (size_t first = 0; first < origins.size(); first += kWindowsPerLaunch) {
    a.windows = static_cast<int>(std::min<size_t>(kWindowsPerLaunch, origins.size() - first));
    for (int b = 0; b < a.windows; ++b)
      for (int k = 0; k < 3; ++k) a.origin[b][k] = origins[first + static_cast<size_t>(b)][k];
    const unsigned grid = GridFor(window_elems * a.windows, *ctx);
    ITKIT_RETURN_IF_ERROR(DispatchFloat(volume.dtype(), [&]<typename T>() -> Status {
      T* dst = static_cast<T*>(batch.raw()) + static_cast<int64_t>(first) * window_elems;
      GatherWindowsKernel<T><<<grid, kThreads, 0, ctx->stream>>>(static_cast<const T*>(volume.raw()), dst, a,
                                                                 T(outside));
      ITKIT_CUDA_CHECK_LAUNCH("GatherWindowsKernel");
      return Status::Ok();
    }));
  }
  return Status::Ok();
}

}  // namespace itkit::cuda
