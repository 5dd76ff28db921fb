// The window loop: extract batches of windows, run the network (with optional mirror
// TTA), accumulate; shrinks the batch when the device runs out of memory.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "accumulator.h"
#include "block_grid.h"
#include "itkit/pipeline.h"
#include "network.h"
#include "volume.h"
#include "timing.h"

namespace itkit::pipeline {

struct WindowRunSpec {
  const float* input = nullptr;  // (channels, size) normalised, network orientation
  // The input's channels are each in the block layout of InputBlocks(size, patch,
  // stride) instead of z, y, x.
  bool input_blocked = false;
  int channels = 1;
  Zyx size{};
  Zyx patch{}, stride{};
  int batch = 1;
  bool gaussian = false;
  bool tta = false;
  std::string accumulate_device = "auto";  // "auto" | "cpu" | "cuda"
  int expected_classes = 0;                // 0 = whatever the network returns
  // Where labels go (see LabelTarget): `label_voxels` elements, voxel (x, y, z) of
  // the volume at offset + x*s0 + y*s1 + z*s2.
  int64_t label_voxels = 0;
  int64_t label_offset = 0;
  std::array<int64_t, 3> label_strides{0, 0, 0};
  bool keep_averages = false;  // Averaged() wanted afterwards
  // Extract the next batch of windows on a helper thread while the network runs
  // the current one; default: when the network runs on a device (its CPU is idle).
  std::optional<bool> prefetch;
  // Patch, stride and batch come from requests: the padded volume and one batch of
  // windows may not hold more than this many voxels (the input image's limit).
  int64_t max_voxels = kDefaultMaxVoxels;
};

struct WindowRunResult {
  std::unique_ptr<Accumulator> accumulator;  // finished; Averaged() if keep_averages
  Buffer<uint8_t> labels8;    // classes <= 255
  Buffer<uint16_t> labels16;  // more classes
  int classes = 0;
  int64_t windows = 0;
  int batch = 0;          // the batch size that ran (after any OOM shrinking)
  PartTimer extract, network, accumulate;
  std::vector<std::string> notes;
};

// The block layout (BlockGrid over the whole depth) the window loop reads fastest,
// for an input that needs no padding; nullopt otherwise (or for a bad plan, which
// RunWindows then reports).
std::optional<BlockGrid> InputBlocks(const Zyx& size, const Zyx& patch, const Zyx& stride);

Result<WindowRunResult> RunWindows(Network& network, const WindowRunSpec& spec, ThreadPool* pool,
                                   const ProgressFn& progress, const std::atomic<bool>* cancel);

}  // namespace itkit::pipeline
