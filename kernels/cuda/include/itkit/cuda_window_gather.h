// Cutting sliding windows out of a volume that is already on the GPU, the counterpart
// of itkit/cuda_accumulator.h. It runs on the CUDA backend's stream, so a session on
// that backend reading the batch next, and the accumulator adding its logits, are
// ordered after it without a synchronisation (a cudaMemcpy3D on the legacy default
// stream is not ordered with the backend's non-blocking stream).
//
// Use (only in builds with ITKIT_HAVE_CUDA):
//
//   cuda::GatherWindows(*backend, volume_dev, origins, batch_dev);  // then session.Run({batch_dev})
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "itkit/backend.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit::cuda {

// volume: [C, D, H, W] (or [D, H, W]: C = 1), f32 or f16, on `backend`'s GPU.
// batch:  [B, C, pz, py, px] of the same dtype on that GPU, B >= origins.size();
// window b (b < origins.size()) gets the voxels from origins[b] = (z, y, x) on, those
// outside the volume the value `outside`; windows b >= origins.size() are left as they
// are. Enqueued, not waited for.
Status GatherWindows(const Backend& backend, const Tensor& volume, const std::vector<std::array<int64_t, 3>>& origins,
                     Tensor& batch, float outside = 0.0f);

}  // namespace itkit::cuda
