#include "metadata.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "orientation.h"

namespace itkit::pipeline {
namespace {

using nlohmann::json;

// Numbers may arrive as JSON numbers or as numeric strings ("400" in a YAML file
// quoted by hand, or an ONNX prop that failed to be plain JSON).
Result<double> AsNumber(const json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    char* end = nullptr;
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return d;
  }
  return InvalidArgument(where, ": expected a number, got ", v.dump());
}

Result<bool> AsBool(const json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "true" || s == "True" || s == "1") return true;
    if (s == "false" || s == "False" || s == "0") return false;
  }
  if (v.is_number_integer()) return v.get<int64_t>() != 0;
  return InvalidArgument(where, ": expected true or false, got ", v.dump());
}

Result<std::string> AsString(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  return InvalidArgument(where, ": expected a string, got ", v.dump());
}

Result<std::vector<double>> AsNumbers(const json& v, size_t n, const std::string& where) {
  if (!v.is_array() || v.size() != n) return InvalidArgument(where, ": expected a list of ", n, " numbers, got ", v.dump());
  std::vector<double> out;
  for (const json& e : v) {
    ITKIT_ASSIGN_OR_RETURN(double d, AsNumber(e, where));
    out.push_back(d);
  }
  return out;
}

Result<std::vector<int64_t>> AsSizes(const json& v, const std::string& where) {
  ITKIT_ASSIGN_OR_RETURN(std::vector<double> d, AsNumbers(v, 3, where));
  std::vector<int64_t> out;
  for (double x : d) {
    if (x != std::floor(x) || x < 1 || x > 1e6) return InvalidArgument(where, ": ", x, " is not a positive integer size");
    out.push_back(static_cast<int64_t>(x));
  }
  return out;
}

Status ApplyInference(const json& v, const std::string& where, InferenceConfig* c) {
  if (!v.is_object()) return InvalidArgument(where, ": expected an object, got ", v.dump());
  for (const auto& [key, value] : v.items()) {
    const std::string at = where + "." + key;
    if (key == "patch_size") {
      if (value.is_null()) { c->patch_size.clear(); continue; }
      ITKIT_ASSIGN_OR_RETURN(c->patch_size, AsSizes(value, at));
    } else if (key == "patch_stride") {
      if (value.is_null()) { c->patch_stride.clear(); continue; }
      ITKIT_ASSIGN_OR_RETURN(c->patch_stride, AsSizes(value, at));
    } else if (key == "forward_batch_windows") {
      ITKIT_ASSIGN_OR_RETURN(double d, AsNumber(value, at));
      if (d != std::floor(d) || d < 1 || d > 4096) return InvalidArgument(at, ": must be an integer >= 1");
      c->forward_batch_windows = static_cast<int>(d);
    } else if (key == "blend") {
      ITKIT_ASSIGN_OR_RETURN(c->blend, AsString(value, at));
    } else if (key == "tta") {
      ITKIT_ASSIGN_OR_RETURN(c->tta, AsBool(value, at));
    } else if (key == "fp16") {
      ITKIT_ASSIGN_OR_RETURN(c->fp16, AsBool(value, at));
    } else if (key == "accumulate_device") {
      ITKIT_ASSIGN_OR_RETURN(c->accumulate_device, AsString(value, at));
    } else if (key == "forward_device") {
      ITKIT_ASSIGN_OR_RETURN(c->forward_device, AsString(value, at));
    }  // other ITKIT keys (argmax_batchsize) have no meaning here
  }
  return Status::Ok();
}

Status ApplyNormalization(const json& v, const std::string& where, Normalization* n) {
  if (!v.is_object()) return InvalidArgument(where, ": expected an object, got ", v.dump());
  for (const auto& [key, value] : v.items()) {
    const std::string at = where + "." + key;
    if (key == "mode") {
      ITKIT_ASSIGN_OR_RETURN(n->mode, AsString(value, at));
      if (n->mode != "window" && n->mode != "ct" && n->mode != "zscore")
        return InvalidArgument(at, ": '", n->mode, "' is not one of window, ct, zscore");
    } else if (key == "clip") {
      ITKIT_ASSIGN_OR_RETURN(std::vector<double> c, AsNumbers(value, 2, at));
      n->clip_low = c[0];
      n->clip_high = c[1];
    } else if (key == "mean") {
      ITKIT_ASSIGN_OR_RETURN(n->mean, AsNumber(value, at));
    } else if (key == "std") {
      ITKIT_ASSIGN_OR_RETURN(n->std, AsNumber(value, at));
    } else if (key == "window_level" || key == "wl") {
      ITKIT_ASSIGN_OR_RETURN(n->window_level, AsNumber(value, at));
    } else if (key == "window_width" || key == "ww") {
      ITKIT_ASSIGN_OR_RETURN(n->window_width, AsNumber(value, at));
    }
  }
  return Status::Ok();
}

Result<LabelInfo> ParseLabel(const json& v, int index, const std::string& where) {
  LabelInfo l;
  l.color = DefaultLabelColor(index);
  if (v.is_string()) {
    l.name = v.get<std::string>();
    return l;
  }
  if (!v.is_object()) return InvalidArgument(where, ": expected a name or {name, color}, got ", v.dump());
  if (v.contains("name")) {
    ITKIT_ASSIGN_OR_RETURN(l.name, AsString(v["name"], where + ".name"));
  }
  if (v.contains("color")) {
    ITKIT_ASSIGN_OR_RETURN(std::vector<double> c, AsNumbers(v["color"], 3, where + ".color"));
    for (size_t i = 0; i < 3; ++i) {
      if (c[i] < 0 || c[i] > 255) return InvalidArgument(where, ".color: ", c[i], " is outside 0..255");
      l.color[i] = static_cast<uint8_t>(std::lround(c[i]));
    }
  }
  if (l.name.empty()) l.name = "label_" + std::to_string(index);
  return l;
}

Result<std::vector<LabelInfo>> ParseLabels(const json& v, const std::string& where) {
  std::vector<LabelInfo> labels;
  if (v.is_array()) {
    if (v.size() > 65536) return InvalidArgument(where, ": ", v.size(), " labels is too many");
    for (size_t i = 0; i < v.size(); ++i) {
      ITKIT_ASSIGN_OR_RETURN(LabelInfo l, ParseLabel(v[i], static_cast<int>(i), StrCat(where, "[", i, "]")));
      labels.push_back(l);
    }
    return labels;
  }
  if (v.is_object()) {  // {"0": "background", "1": "liver"}: keys are class values
    std::map<int, LabelInfo> by_value;
    for (const auto& [key, value] : v.items()) {
      char* end = nullptr;
      const long k = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || k < 0 || k > 65535)
        return InvalidArgument(where, ": key '", key, "' is not a class value 0..65535");
      ITKIT_ASSIGN_OR_RETURN(by_value[static_cast<int>(k)], ParseLabel(value, static_cast<int>(k), where + "." + key));
    }
    const int n = by_value.empty() ? 0 : by_value.rbegin()->first + 1;
    for (int i = 0; i < n; ++i) {
      auto it = by_value.find(i);
      if (it != by_value.end()) {
        labels.push_back(it->second);
      } else {
        labels.push_back(LabelInfo{"label_" + std::to_string(i), DefaultLabelColor(i)});
      }
    }
    return labels;
  }
  return InvalidArgument(where, ": expected a list of labels, got ", v.dump());
}

json YamlToJson(const YAML::Node& node, int depth) {
  if (depth > 64) return nullptr;  // a sidecar never nests this deep
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : node) a.push_back(YamlToJson(e, depth + 1));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : node) o[kv.first.Scalar()] = YamlToJson(kv.second, depth + 1);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted: always a string
      if (s == "null" || s == "~" || s.empty()) return nullptr;
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      char* end = nullptr;
      const double d = std::strtod(s.c_str(), &end);
      if (end == s.c_str() + s.size() && std::isfinite(d)) {
        if (d == std::floor(d) && std::abs(d) < 9e15) return static_cast<int64_t>(d);
        return d;
      }
      return s;
    }
    default:
      return nullptr;
  }
}

}  // namespace

nlohmann::json MetadataPropsToJson(const std::map<std::string, std::string>& props) {
  json o = json::object();
  for (const auto& [key, value] : props) {
    json parsed = json::parse(value, nullptr, /*allow_exceptions=*/false);
    o[key] = parsed.is_discarded() ? json(value) : parsed;
  }
  return o;
}

Result<nlohmann::json> ReadYamlSidecar(const std::string& path) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (root.IsNull()) return json::object();
    if (!root.IsMap()) return InvalidArgument(path, ": expected a mapping of metadata keys");
    return YamlToJson(root, 0);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path, ": ", e.what());
  }
}

Status ApplyMetadata(const nlohmann::json& object, const std::string& source, ModelInfo* info) {
  if (!object.is_object()) return InvalidArgument(source, ": expected key/value metadata");
  try {
    for (const auto& [key, v] : object.items()) {
      const std::string at = source + ": " + key;
      if (key == "name") {
        ITKIT_ASSIGN_OR_RETURN(info->name, AsString(v, at));
      } else if (key == "description") {
        ITKIT_ASSIGN_OR_RETURN(info->description, AsString(v, at));
      } else if (key == "inference_config") {
        ITKIT_RETURN_IF_ERROR(ApplyInference(v, at, &info->inference));
      } else if (key == "window_level" || key == "wl") {
        ITKIT_ASSIGN_OR_RETURN(info->normalization.window_level, AsNumber(v, at));
      } else if (key == "window_width" || key == "ww") {
        ITKIT_ASSIGN_OR_RETURN(info->normalization.window_width, AsNumber(v, at));
      } else if (key == "normalization") {
        ITKIT_RETURN_IF_ERROR(ApplyNormalization(v, at, &info->normalization));
      } else if (key == "labels") {
        ITKIT_ASSIGN_OR_RETURN(info->labels, ParseLabels(v, at));
      } else if (key == "spacing") {
        ITKIT_ASSIGN_OR_RETURN(std::vector<double> s, AsNumbers(v, 3, at));
        for (double x : s)
          if (!(x > 0)) return InvalidArgument(at, ": spacing must be positive");
        info->spacing = std::array<double, 3>{s[0], s[1], s[2]};
      } else if (key == "resample_to_spacing") {
        ITKIT_ASSIGN_OR_RETURN(info->resample_to_spacing, AsBool(v, at));
      } else if (key == "resample_back") {
        ITKIT_ASSIGN_OR_RETURN(info->resample_back, AsString(v, at));
        if (info->resample_back != "labels" && info->resample_back != "logits")
          return InvalidArgument(at, ": '", info->resample_back, "' is not labels or logits");
      } else if (key == "orientation") {
        ITKIT_ASSIGN_OR_RETURN(std::string code, AsString(v, at));
        auto norm = NormalizeOrientationCode(code);
        if (!norm.ok()) return norm.status().WithContext(at);
        info->orientation = *norm;
      } else if (key == "input_channels") {
        ITKIT_ASSIGN_OR_RETURN(double c, AsNumber(v, at));
        if (c != std::floor(c) || c < 1 || c > 4096) return InvalidArgument(at, ": must be an integer >= 1");
        info->input_channels = static_cast<int>(c);
      }
    }
  } catch (const std::exception& e) {
    return InvalidArgument(source, ": ", e.what());
  }
  return Status::Ok();
}

void ApplyOverride(const InferenceOverride& o, InferenceConfig* c) {
  if (o.patch_size) c->patch_size = *o.patch_size;
  if (o.patch_stride) c->patch_stride = *o.patch_stride;
  if (o.forward_batch_windows) c->forward_batch_windows = *o.forward_batch_windows;
  if (o.blend) c->blend = *o.blend;
  if (o.accumulate_device) c->accumulate_device = *o.accumulate_device;
  if (o.forward_device) c->forward_device = *o.forward_device;
  if (o.tta) c->tta = *o.tta;
  if (o.fp16) c->fp16 = *o.fp16;
}

Status ValidateInferenceConfig(const InferenceConfig& c) {
  auto check_sizes = [](const std::vector<int64_t>& v, const char* name) -> Status {
    if (v.empty()) return Status::Ok();
    if (v.size() != 3) return InvalidArgument("inference_config.", name, " needs 3 values (z, y, x)");
    for (int64_t x : v)
      if (x < 1 || x > 100000) return InvalidArgument("inference_config.", name, ": ", x, " is not a valid size");
    return Status::Ok();
  };
  ITKIT_RETURN_IF_ERROR(check_sizes(c.patch_size, "patch_size"));
  ITKIT_RETURN_IF_ERROR(check_sizes(c.patch_stride, "patch_stride"));
  if (c.forward_batch_windows < 1 || c.forward_batch_windows > 4096)
    return InvalidArgument("inference_config.forward_batch_windows must be 1..4096");
  if (c.blend != "constant" && c.blend != "gaussian")
    return InvalidArgument("inference_config.blend '", c.blend, "' is not constant or gaussian");
  for (const auto* d : {&c.accumulate_device, &c.forward_device})
    if (*d != "auto" && *d != "cpu" && *d != "cuda")
      return InvalidArgument("inference_config device '", *d, "' is not auto, cpu or cuda");
  return Status::Ok();
}

std::array<uint8_t, 3> DefaultLabelColor(int label) {
  // Hand-picked, well separated hues for the first labels, then golden-angle hues.
  static const uint8_t kPalette[][3] = {
      {0, 0, 0},       {128, 174, 128}, {241, 214, 145}, {177, 122, 101}, {111, 184, 210},
      {216, 101, 79},  {221, 130, 101}, {144, 238, 144}, {192, 104, 88},  {220, 245, 20},
      {78, 63, 0},     {255, 250, 220}, {230, 220, 70},  {200, 200, 235}, {250, 250, 210},
      {244, 214, 49},  {0, 151, 206},   {145, 60, 66},   {183, 156, 220}, {183, 214, 211}};
  constexpr int kN = sizeof(kPalette) / sizeof(kPalette[0]);
  if (label >= 0 && label < kN) return {kPalette[label][0], kPalette[label][1], kPalette[label][2]};
  const double h = std::fmod(label * 137.508, 360.0) / 60.0;
  const double x = 1 - std::abs(std::fmod(h, 2.0) - 1);
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h)) {
    case 0: r = 1; g = x; break;
    case 1: r = x; g = 1; break;
    case 2: g = 1; b = x; break;
    case 3: g = x; b = 1; break;
    case 4: r = x; b = 1; break;
    default: r = 1; b = x; break;
  }
  auto c = [](double v) { return static_cast<uint8_t>(std::lround(55 + 200 * v)); };
  return {c(r), c(g), c(b)};
}

}  // namespace itkit::pipeline
