// Parsing and validation of request parameters: the JSON body of a model load
// and the text fields of an inference form. Pure functions (fuzzed).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "itkit/pipeline.h"
#include "server/api_error.h"

namespace itkit::server {

// Only the fields a request actually set; the rest keeps the model's values.
struct InferenceOverrides {
  std::optional<std::vector<int64_t>> patch_size, patch_stride;
  std::optional<int> forward_batch_windows;
  std::optional<std::string> blend;
  std::optional<bool> tta, fp16;
  std::optional<std::string> accumulate_device, forward_device;

  bool any() const;
  pipeline::InferenceOverride ToPipeline() const;
  nlohmann::json ToJson() const;
};

ApiResult<InferenceOverrides> ParseInferenceConfigJson(const nlohmann::json& j);

struct LoadRequest {
  std::string name;
  std::string backend_type = "onnx";
  std::string model_path;
  std::string config_path;
  InferenceOverrides inference;
};

// The JSON body of POST /api/models and POST /api/model.
ApiResult<LoadRequest> ParseLoadRequest(std::string_view body);

// Form fields of /api/infer and /api/jobs.
struct InferParams {
  std::string model_name;
  bool force_cpu = false;
  std::optional<double> window_level, window_width;
  InferenceOverrides overrides;
  std::string output_format = "nii.gz";  // "nii.gz" | "seg.nrrd"
};
ApiResult<InferParams> ParseInferParams(const std::map<std::string, std::string>& fields);

// "96,96,96", "[96, 96, 96]", "96 96 96" or "96" (all three axes).
ApiResult<std::vector<int64_t>> ParseTriple(std::string_view text, const std::string& field);
ApiResult<bool> ParseBoolText(std::string_view text, const std::string& field);
ApiResult<double> ParseNumberText(std::string_view text, const std::string& field);

// Model names appear in URLs: letters, digits, '.', '_', '-'; up to 128.
bool ValidModelName(std::string_view name);
// Derives a valid name from free text (metadata names, file stems).
std::string SanitizeModelName(std::string_view text);

nlohmann::json InferenceConfigToJson(const pipeline::InferenceConfig& config);

}  // namespace itkit::server
