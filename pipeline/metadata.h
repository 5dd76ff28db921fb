// Model metadata (docs/model-metadata.md): ONNX metadata_props and the YAML sidecar
// are both turned into one JSON object, then applied key by key onto ModelInfo, so
// both sources share one parser and the same error messages.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "itkit/pipeline.h"

namespace itkit::pipeline {

// Each value parsed as JSON when it is JSON ("[1, 2]", "400", "true"), else kept as
// the string it is.
nlohmann::json MetadataPropsToJson(const std::map<std::string, std::string>& props);
// A YAML mapping → JSON (plain scalars typed as YAML 1.2 core: null, bool, number).
Result<nlohmann::json> ReadYamlSidecar(const std::string& path);

// Applies the keys it knows; `source` ("model.onnx metadata", "model.yaml") prefixes
// errors, which also name the key.
Status ApplyMetadata(const nlohmann::json& object, const std::string& source, ModelInfo* info);
void ApplyOverride(const InferenceOverride& o, InferenceConfig* config);
Status ValidateInferenceConfig(const InferenceConfig& c);

// A stable, distinguishable colour for a class without one (0 = background, black).
std::array<uint8_t, 3> DefaultLabelColor(int label);

}  // namespace itkit::pipeline
