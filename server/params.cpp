#include "server/params.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace itkit::server {

namespace {

constexpr int64_t kMaxPatch = 4096;

std::string Trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

ApiResult<std::vector<int64_t>> TripleFromJson(const nlohmann::json& v, const std::string& field) {
  std::vector<int64_t> out;
  auto one = [&](const nlohmann::json& x) -> bool {
    if (x.is_number_integer() || x.is_number_unsigned()) {
      // Read as double first: huge unsigned values must not wrap around.
      double d = x.get<double>();
      if (d < 1 || d > kMaxPatch) return false;
      out.push_back(x.get<int64_t>());
      return true;
    }
    if (x.is_number_float()) {
      double d = x.get<double>();
      if (!(d >= 1 && d <= kMaxPatch) || std::floor(d) != d) return false;
      out.push_back(static_cast<int64_t>(d));
      return true;
    }
    return false;
  };
  const std::string bad = field + " must be 3 integers in [1, " + std::to_string(kMaxPatch) + "]";
  if (v.is_array()) {
    if (v.size() != 3 && v.size() != 1) return MakeError(400, bad);
    for (const auto& x : v) {
      if (!one(x)) return MakeError(400, bad);
    }
  } else if (!one(v)) {
    return MakeError(400, bad);
  }
  if (out.size() == 1) out.assign(3, out[0]);
  return out;
}

ApiResult<std::string> ChoiceFromJson(const nlohmann::json& v, const std::string& field,
                                      std::initializer_list<const char*> choices) {
  std::string allowed;
  for (const char* c : choices) allowed += (allowed.empty() ? "" : ", ") + std::string(c);
  if (!v.is_string()) return MakeError(400, field + " must be one of: " + allowed);
  std::string s = Lower(v.get<std::string>());
  for (const char* c : choices) {
    if (s == c) return s;
  }
  return MakeError(400, field + " must be one of: " + allowed);
}

ApiResult<bool> BoolFromJson(const nlohmann::json& v, const std::string& field) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) return ParseBoolText(v.get<std::string>(), field);
  if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) return v.get<int64_t>() == 1;
  return MakeError(400, field + " must be true or false");
}

}  // namespace

bool InferenceOverrides::any() const {
  return patch_size || patch_stride || forward_batch_windows || blend || tta || fp16 || accumulate_device ||
         forward_device;
}

pipeline::InferenceOverride InferenceOverrides::ToPipeline() const {
  pipeline::InferenceOverride o;
  o.patch_size = patch_size;
  o.patch_stride = patch_stride;
  o.forward_batch_windows = forward_batch_windows;
  o.blend = blend;
  o.tta = tta;
  o.fp16 = fp16;
  o.accumulate_device = accumulate_device;
  o.forward_device = forward_device;
  return o;
}

nlohmann::json InferenceOverrides::ToJson() const {
  nlohmann::json j = nlohmann::json::object();
  if (patch_size) j["patch_size"] = *patch_size;
  if (patch_stride) j["patch_stride"] = *patch_stride;
  if (forward_batch_windows) j["forward_batch_windows"] = *forward_batch_windows;
  if (blend) j["blend"] = *blend;
  if (tta) j["tta"] = *tta;
  if (fp16) j["fp16"] = *fp16;
  if (accumulate_device) j["accumulate_device"] = *accumulate_device;
  if (forward_device) j["forward_device"] = *forward_device;
  return j;
}

ApiResult<InferenceOverrides> ParseInferenceConfigJson(const nlohmann::json& j) {
  InferenceOverrides o;
  if (j.is_null()) return o;
  if (!j.is_object()) return MakeError(400, "inference_config must be a JSON object");
  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;  // "not set"
    const std::string f = "inference_config." + key;
    if (key == "patch_size" || key == "patch_stride") {
      auto t = TripleFromJson(v, f);
      if (!t.ok()) return t.error();
      (key == "patch_size" ? o.patch_size : o.patch_stride) = t.value();
    } else if (key == "forward_batch_windows") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1024) {
        return MakeError(400, f + " must be an integer in [1, 1024]");
      }
      o.forward_batch_windows = static_cast<int>(v.get<int64_t>());
    } else if (key == "blend") {
      auto c = ChoiceFromJson(v, f, {"constant", "gaussian"});
      if (!c.ok()) return c.error();
      o.blend = c.value();
    } else if (key == "tta" || key == "fp16") {
      auto b = BoolFromJson(v, f);
      if (!b.ok()) return b.error();
      (key == "tta" ? o.tta : o.fp16) = b.value();
    } else if (key == "accumulate_device" || key == "forward_device") {
      auto c = ChoiceFromJson(v, f, {"auto", "cpu", "cuda"});
      if (!c.ok()) return c.error();
      (key == "accumulate_device" ? o.accumulate_device : o.forward_device) = c.value();
    } else {
      // ITKIT's InferenceConfig(**dict) rejects unknown keys too; a typo must
      // not be silently ignored.
      return MakeError(400, "unknown inference_config key '" + key +
                                "' (known: patch_size, patch_stride, forward_batch_windows, blend, tta, fp16, "
                                "accumulate_device, forward_device)");
    }
  }
  return o;
}

ApiResult<LoadRequest> ParseLoadRequest(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return MakeError(400, "request body is not valid JSON");
  if (!j.is_object()) return MakeError(400, "request body must be a JSON object");
  LoadRequest r;
  auto str = [&](const char* key, std::string* out) -> ApiStatus {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ApiOk();
    if (!it->is_string()) return MakeError(400, std::string(key) + " must be a string");
    *out = it->get<std::string>();
    return ApiOk();
  };
  for (auto [key, out] : {std::pair{"name", &r.name}, std::pair{"backend_type", &r.backend_type},
                          std::pair{"model_path", &r.model_path}, std::pair{"config_path", &r.config_path}}) {
    ApiStatus st = str(key, out);
    if (!st.ok()) return st.error();
  }
  r.backend_type = Lower(Trimmed(r.backend_type));
  if (r.backend_type.empty()) r.backend_type = "onnx";
  if (!r.name.empty() && !ValidModelName(r.name)) {
    return MakeError(400, "name must be 1-128 characters of letters, digits, '.', '_' or '-'");
  }
  if (auto it = j.find("inference_config"); it != j.end()) {
    auto o = ParseInferenceConfigJson(*it);
    if (!o.ok()) return o.error();
    r.inference = o.value();
  }
  return r;
}

ApiResult<bool> ParseBoolText(std::string_view text, const std::string& field) {
  std::string s = Lower(Trimmed(text));
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off" || s.empty()) return false;
  return MakeError(400, field + " must be true or false");
}

ApiResult<double> ParseNumberText(std::string_view text, const std::string& field) {
  std::string s = Trimmed(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) {
    return MakeError(400, field + " must be a number");
  }
  return v;
}

ApiResult<std::vector<int64_t>> ParseTriple(std::string_view text, const std::string& field) {
  std::string s = Trimmed(text);
  if (!s.empty() && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  for (auto& c : s) {
    if (c == ',' || c == 'x') c = ' ';
  }
  std::vector<int64_t> out;
  const std::string bad = field + " must be 3 integers in [1, " + std::to_string(kMaxPatch) + "], e.g. 96,96,96";
  const char* p = s.c_str();
  while (*p) {
    while (*p == ' ' || *p == '\t') ++p;
    if (!*p) break;
    if (!std::isdigit(static_cast<unsigned char>(*p))) return MakeError(400, bad);
    char* end = nullptr;
    long long v = std::strtoll(p, &end, 10);
    if (v < 1 || v > kMaxPatch || out.size() >= 3) return MakeError(400, bad);
    out.push_back(v);
    p = end;
  }
  if (out.size() == 1) out.assign(3, out[0]);
  if (out.size() != 3) return MakeError(400, bad);
  return out;
}

ApiResult<InferParams> ParseInferParams(const std::map<std::string, std::string>& fields) {
  InferParams p;
  auto get = [&](const char* key) -> std::string {
    auto it = fields.find(key);
    return it == fields.end() ? "" : Trimmed(it->second);
  };
  p.model_name = get("model_name");
  if (std::string v = get("force_cpu"); !v.empty()) {
    auto b = ParseBoolText(v, "force_cpu");
    if (!b.ok()) return b.error();
    p.force_cpu = b.value();
  }
  // Empty means "not given", as in the original server.
  for (auto [key, out] : {std::pair{"window_level", &p.window_level}, std::pair{"window_width", &p.window_width}}) {
    if (std::string v = get(key); !v.empty()) {
      auto n = ParseNumberText(v, key);
      if (!n.ok()) return n.error();
      *out = n.value();
    }
  }
  if (p.window_width && *p.window_width <= 0) return MakeError(400, "window_width must be positive");
  for (auto [key, out] : {std::pair{"patch_size", &p.overrides.patch_size},
                          std::pair{"patch_stride", &p.overrides.patch_stride}}) {
    if (std::string v = get(key); !v.empty()) {
      auto t = ParseTriple(v, key);
      if (!t.ok()) return t.error();
      *out = t.value();
    }
  }
  if (std::string v = Lower(get("blend")); !v.empty()) {
    if (v != "constant" && v != "gaussian") return MakeError(400, "blend must be constant or gaussian");
    p.overrides.blend = v;
  }
  if (std::string v = get("tta"); !v.empty()) {
    auto b = ParseBoolText(v, "tta");
    if (!b.ok()) return b.error();
    p.overrides.tta = b.value();
  }
  if (std::string v = get("forward_batch_windows"); !v.empty()) {
    auto n = ParseNumberText(v, "forward_batch_windows");
    if (!n.ok() || n.value() < 1 || n.value() > 1024 || std::floor(n.value()) != n.value()) {
      return MakeError(400, "forward_batch_windows must be an integer in [1, 1024]");
    }
    p.overrides.forward_batch_windows = static_cast<int>(n.value());
  }
  for (auto [key, out] : {std::pair{"forward_device", &p.overrides.forward_device},
                          std::pair{"accumulate_device", &p.overrides.accumulate_device}}) {
    if (std::string v = Lower(get(key)); !v.empty()) {
      if (v != "auto" && v != "cpu" && v != "cuda") return MakeError(400, std::string(key) + " must be auto, cpu or cuda");
      *out = v;
    }
  }
  if (std::string v = Lower(get("output_format")); !v.empty()) {
    if (!v.empty() && v.front() == '.') v.erase(0, 1);
    if (v != "nii.gz" && v != "seg.nrrd") return MakeError(400, "output_format must be nii.gz or seg.nrrd");
    p.output_format = v;
  }
  return p;
}

bool ValidModelName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  if (name == "upload") return false;  // /api/models/upload is a route of its own
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

std::string SanitizeModelName(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (out.size() >= 128) break;
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  while (!out.empty() && out.front() == '.') out.erase(0, 1);
  return out.empty() || out == "upload" ? "model" : out;
}

nlohmann::json InferenceConfigToJson(const pipeline::InferenceConfig& c) {
  nlohmann::json j;
  j["patch_size"] = c.patch_size;
  j["patch_stride"] = c.patch_stride;
  j["forward_batch_windows"] = c.forward_batch_windows;
  j["blend"] = c.blend;
  j["tta"] = c.tta;
  j["fp16"] = c.fp16;
  j["accumulate_device"] = c.accumulate_device;
  j["forward_device"] = c.forward_device;
  return j;
}

}  // namespace itkit::server
