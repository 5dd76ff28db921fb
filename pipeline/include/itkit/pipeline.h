// The segmentation pipeline: image file in, label file out. Read (ITK), reorient to
// the model's orientation, normalise intensities, sliding-window inference with
// blending, argmax, back to the input's grid, write. The server and the batch CLI
// talk only to this header; ITK types never leak out of it.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "itkit/status.h"

namespace itkit::pipeline {

struct LabelInfo {
  std::string name;
  std::array<uint8_t, 3> color{128, 128, 128};
};

struct Normalization {
  std::string mode = "window";  // "window" | "ct" | "zscore"
  std::optional<double> window_level, window_width;       // mode "window"
  std::optional<double> clip_low, clip_high, mean, std;   // mode "ct"
};

// ITKIT's inference_config plus our extensions, as resolved for a model (defaults <
// ONNX metadata < YAML sidecar < load request); an empty patch_size means "no static
// input and none configured": the whole volume is one window, as in ITKIT.
struct InferenceConfig {
  std::vector<int64_t> patch_size;    // (z, y, x)
  std::vector<int64_t> patch_stride;  // (z, y, x); default patch // 2
  int forward_batch_windows = 1;
  std::string blend = "constant";     // "constant" (ITKIT) | "gaussian" (sigma = patch/8)
  bool tta = false;                   // mirroring test-time augmentation
  bool fp16 = false;
  std::string accumulate_device = "auto";  // "auto" | "cpu" | "cuda"
  std::string forward_device = "auto";     // "auto" | "cpu" | "cuda"
};

// Per-field overrides of InferenceConfig from a load or segment request; an unset
// field keeps the model's value (so a request can also switch TTA or fp16 off).
struct InferenceOverride {
  std::optional<std::vector<int64_t>> patch_size, patch_stride;  // (z, y, x)
  std::optional<int> forward_batch_windows;
  std::optional<std::string> blend, accumulate_device, forward_device;
  std::optional<bool> tta, fp16;
};

// Default cap on the voxels of one input image: a header declaring more is rejected
// before anything is allocated.
inline constexpr int64_t kDefaultMaxVoxels = int64_t{1} << 31;

// Everything the model declares, merged: ONNX metadata < YAML sidecar < load request.
struct ModelInfo {
  std::string name;
  std::string description;
  std::string path;
  std::string sidecar_path;        // the YAML sidecar applied ("" = none)
  std::vector<LabelInfo> labels;   // index = class value
  Normalization normalization;
  std::optional<std::array<double, 3>> spacing;  // (x, y, z) mm
  bool resample_to_spacing = false;
  std::string orientation = "LPI";
  std::string resample_back = "labels";  // "labels" (nearest) | "logits" (linear, then argmax)
  InferenceConfig inference;
  int input_channels = 1;
  int num_classes = 0;
  std::vector<int64_t> static_patch;  // (z,y,x) when the network's input is static
  std::string backend;                // "cuda" or "cpu": where the network runs
};

struct LoadOptions {
  std::string model_path;              // .onnx
  std::string sidecar_path;            // "" = NAME.yaml next to the model if present
  std::string name;                    // "" = sidecar/metadata name, else the file stem
  InferenceOverride inference_override;  // fields from a load request
  int threads = 0;                     // CPU threads (0 = all)
  std::string tuning_cache_dir;        // CUDA algorithm cache
  int64_t max_voxels = kDefaultMaxVoxels;  // per input image
  // Benchmarks only: when > 0, no model file is read and a built-in network whose
  // logits bin the normalised intensity into this many classes stands in, so the
  // pipeline around the network can be timed on its own.
  int synthetic_classes = 0;
};

struct SegmentRequest {
  std::string input_path;    // NIfTI/NRRD/MetaImage/... file, or a DICOM series folder
  std::string output_path;   // format from the extension; ".seg.nrrd" writes a Slicer segmentation
  std::optional<double> window_level, window_width;
  InferenceOverride inference_override;  // patch/stride/blend/tta/batch
  bool force_cpu = false;     // ITKIT: accumulation (and argmax) on the host; the network stays put
  std::string stats_path;     // optional per-label statistics JSON
  bool stats = false;         // fill SegmentReport::stats (implied by stats_path)
  std::string probabilities_path;  // optional float probabilities image (softmax, C components)
  // Labels in the model's orientation (ITKIT's behaviour) instead of the input's grid.
  bool output_in_model_orientation = false;
  int compression_level = 1;  // gzip level for compressed outputs (1 = fastest)
};

struct Progress {
  std::string stage;          // "read" | "preprocess" | "windows" | "postprocess" | "write"
  int64_t windows_done = 0;
  int64_t windows_total = 0;
};
using ProgressFn = std::function<void(const Progress&)>;

struct LabelStats {
  int label = 0;
  std::string name;
  int64_t voxels = 0;
  double volume_mm3 = 0;
  double mean = 0, min = 0, max = 0;  // input intensity inside the label
};

struct SegmentReport {
  std::map<std::string, double> stage_seconds;  // per stage, for Server-Timing/metrics
  // Process CPU seconds (all threads) per stage: meaningful when one request runs at
  // a time (benchmarks), where wall time on a shared machine is not.
  std::map<std::string, double> stage_cpu_seconds;
  int64_t windows = 0;
  std::string device;                            // where the network ran
  std::string accumulate_device;                 // where window logits were accumulated ("cpu"/"cuda")
  std::vector<int64_t> size;                     // input size (x, y, z)
  std::vector<LabelStats> stats;
  std::vector<std::string> notes;                // e.g. "GPU out of memory: accumulated on host"
  std::string orientation;                       // the input's, e.g. "LSA"
  int64_t batch = 0;                             // windows per forward actually used
};

class SegmentationModel {
 public:
  static Result<std::shared_ptr<SegmentationModel>> Load(const LoadOptions& options);
  virtual ~SegmentationModel() = default;
  virtual const ModelInfo& info() const = 0;
  // Thread-safe; concurrent calls on one model are serialised per device.
  virtual Result<SegmentReport> Segment(const SegmentRequest& request, const ProgressFn& progress,
                                        const std::atomic<bool>* cancel) = 0;
};

// Checks that a file is a readable image without loading its voxels (header only):
// size, dimension, components; used to reject bad uploads early.
struct ImageHeader {
  int dimension = 0;
  int components = 1;
  std::vector<int64_t> size;
  std::string pixel_type;
  int64_t voxels = 0;  // product of size
};
// Errors when the header declares more than max_voxels voxels (or is unreadable).
Result<ImageHeader> ReadImageHeader(const std::string& path, int64_t max_voxels = kDefaultMaxVoxels);

// Per-label statistics as the JSON document the CLI and server write.
std::string LabelStatsToJson(const SegmentReport& report);

}  // namespace itkit::pipeline
