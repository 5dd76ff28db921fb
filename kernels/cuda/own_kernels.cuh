// Our kernels that compete with a library's (cuDNN) for the same node, and the race
// that picks between them. Where both apply, CudaBackendOptions::own_kernels decides:
// kAuto times both once per shape at plan time, checks that ours agrees with the
// library's output, and remembers the winner in the tuning cache (so a restart does not
// race again); kLibrary never uses ours; kOwn always does (the op tests, so that our
// kernel is compared with the CPU reference whatever the race would say).
#pragma once

#include <functional>

#include "cuda/common.cuh"
#include "cuda/conv3_stem.h"
#include "cuda/conv3_tiles.h"
#include "cuda/strided_transpose.h"

namespace itkit::cuda {

// ConvTranspose with kernel == stride (strided_transpose.h) on f16 NDHWC data with f32
// accumulation; `w` packed [Cin][tap][Cout] f16, `bias` [Cout] f16 or null. On ctx.stream.
Status LaunchStridedTranspose(const CudaContext& ctx, const StridedTransposeShape& shape, const __half* x,
                              const __half* w, const __half* bias, __half* y);

// 3x3x3 convolution, 32 -> 32 channels, stride 1, padding 1 (conv3_tiles.h) on f16
// NDHWC data with f32 accumulation: y = act(conv + bias + z). `w` packed [Cout][tap][Cin]
// f16; `bias` [32] and `z` (laid out as y; may be y itself) may be null. X and W must be
// 16-byte aligned. On ctx.stream. PrepareConv3C32 first (once per device, outside any
// graph capture): Unsupported where the GPU lacks the kernel's shared memory.
Status PrepareConv3C32(const CudaContext& ctx);
Status LaunchConv3C32(const CudaContext& ctx, const Conv3Shape& shape, const __half* x, const __half* w,
                      const __half* bias, const __half* z, __half* y, Act act, float alpha);

// The 3x3x3 stem convolution (conv3_stem.h): 1-4 -> 16 or 32 channels, stride 1,
// padding 1, f16 NDHWC with f32 sums: y = act(conv + bias). `w` packed [Cout][tap][Cin]
// f16, `bias` [Cout] f16 or null; Y 16-byte aligned. On ctx.stream.
bool Conv3StemTakes(int64_t cin, int64_t cout);
Status LaunchConv3Stem(const CudaContext& ctx, const StemShape& shape, const __half* x, const __half* w,
                       const __half* bias, __half* y, Act act, float alpha);

// Two outputs compared: max |own - library| (NaN if either has NaN) against the
// library's scale max |library|.
struct OutputDifference {
  double max_abs_diff = 0, max_abs_library = 0;
  bool agree = false;  // max_abs_diff <= tolerance * max(max_abs_library, 1e-3), no NaN
};

struct KernelRace {
  double library_ms = 0, own_ms = 0;  // per run, the best of a few
  OutputDifference output;
  bool own_wins() const { return output.agree && own_ms < library_ms; }
};

// Runs `library` and `own` once each (each writes `count` f16 values, to `library_out`
// and `own_out`), compares their outputs, then times `repeats` runs of each on the
// context's stream. The callables enqueue their work on ctx.stream.
Result<KernelRace> RaceOwnKernel(CudaContext& ctx, const std::function<Status()>& library,
                                 const std::function<Status()>& own, const __half* library_out,
                                 const __half* own_out, int64_t count, double tolerance, int repeats = 3);

// Fills `count` values with a fixed pseudo-random pattern in [-1, 1) (race inputs).
Status FillPseudoRandom(const CudaContext& ctx, __half* data, int64_t count, uint32_t seed);
Status FillPseudoRandom(const CudaContext& ctx, float* data, int64_t count, uint32_t seed);

// The pieces of a race, also for other contenders (cudnn_graph_conv.h).
// Compares `count` values (f16 when `half`, else f32) of two outputs on the device.
Result<OutputDifference> CompareOutputs(CudaContext& ctx, const void* library_out, const void* own_out, bool half,
                                        int64_t count, double tolerance);
// The best of `repeats` event-timed runs of `run` (which enqueues on ctx.stream), in ms.
Result<double> BestTimeMs(CudaContext& ctx, const std::function<Status()>& run, int repeats);

}  // namespace itkit::cuda
