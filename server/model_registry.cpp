#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>

#include "itkit/log.h"
#include "server/temp_files.h"

namespace itkit::server {

namespace fs = std::filesystem;

ModelEntry::ModelEntry(std::shared_ptr<pipeline::SegmentationModel> model, pipeline::ModelInfo model_info)
    : info(std::move(model_info)), model_(std::move(model)) {}

ModelEntry::~ModelEntry() { RemoveTree(owned_dir); }

std::shared_ptr<pipeline::SegmentationModel> ModelEntry::Acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  if (unloaded_ || !model_) return nullptr;
  ++active_;
  return model_;
}

void ModelEntry::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  --active_;
  cv_.notify_all();
}

bool ModelEntry::unloaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unloaded_;
}

int ModelEntry::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

bool ModelEntry::Unload(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  unloaded_ = true;
  bool idle = cv_.wait_for(lock, timeout, [&] { return active_ == 0; });
  // Users still running keep their own reference; memory goes with the last.
  std::shared_ptr<pipeline::SegmentationModel> drop = std::move(model_);
  lock.unlock();
  drop.reset();
  return idle;
}

nlohmann::json ModelEntry::ToJson() const {
  nlohmann::json labels = nlohmann::json::array();
  for (size_t i = 0; i < info.labels.size(); ++i) {
    const auto& l = info.labels[i];
    labels.push_back({{"value", i}, {"name", l.name}, {"color", {l.color[0], l.color[1], l.color[2]}}});
  }
  nlohmann::json j = {
      {"name", name},
      {"backend_type", backend_type},
      {"backend", info.backend},
      {"loaded", !unloaded()},
      {"model_path", model_path},
      {"config_path", config_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(config_path)},
      {"description", info.description},
      {"source", source},
      {"inference_config", InferenceConfigToJson(info.inference)},
      {"labels", labels},
      {"num_classes", info.num_classes},
      {"input_channels", info.input_channels},
      {"patch_size", info.inference.patch_size},
      {"orientation", info.orientation},
      {"load_seconds", load_seconds},
  };
  if (info.normalization.window_level) j["window_level"] = *info.normalization.window_level;
  if (info.normalization.window_width) j["window_width"] = *info.normalization.window_width;
  j["normalization"] = info.normalization.mode;
  if (info.spacing) j["spacing"] = {(*info.spacing)[0], (*info.spacing)[1], (*info.spacing)[2]};
  return j;
}

ModelUse::ModelUse(std::shared_ptr<ModelEntry> entry) : entry_(std::move(entry)) {
  if (entry_) model_ = entry_->Acquire();
}

ModelUse::~ModelUse() {
  if (model_) {
    model_.reset();  // before Release, so Unload's wait really means "freed"
    entry_->Release();
  }
}

ModelRegistry::ModelRegistry(Loader loader, PathPolicy paths, Options options, Metrics* metrics)
    : loader_(std::move(loader)), paths_(std::move(paths)), options_(std::move(options)), metrics_(metrics) {}

ApiResult<std::shared_ptr<ModelEntry>> ModelRegistry::Load(const LoadSpec& spec) {
  const LoadRequest& req = spec.request;
  if (req.backend_type == "mmengine" || req.backend_type == "pytorch" || req.backend_type == "torch") {
    return MakeError(400,
                     "backend_type 'mmengine' (a PyTorch checkpoint with a Python config) cannot run in this "
                     "C++ server; export the model to ONNX with tools/export_onnx.py and load the .onnx file "
                     "with backend_type 'onnx'");
  }
  if (req.backend_type != "onnx") {
    return MakeError(400, "unknown backend_type '" + req.backend_type + "' (supported: onnx)");
  }
  if (req.model_path.empty()) return MakeError(400, "model_path is required");

  std::string model_path = req.model_path, config_path = req.config_path;
  if (!spec.trusted_paths) {
    auto resolved = paths_.Resolve(req.model_path, "model_path");
    if (!resolved.ok()) return resolved.error();
    model_path = resolved.value();
    if (!config_path.empty()) {
      auto sidecar = paths_.Resolve(req.config_path, "config_path");
      if (!sidecar.ok()) return sidecar.error();
      config_path = sidecar.value();
    }
  }
  if (!config_path.empty()) {
    std::string ext = fs::path(config_path).extension().string();
    if (ext == ".py") {
      return MakeError(400, "config_path is a Python (MMEngine) config; ONNX models take an optional YAML "
                            "sidecar (.yaml) instead — see docs/model-metadata.md");
    }
  }

  // One load per name at a time; a second concurrent one gets 409.
  std::string lock_name = req.name.empty() ? ("\x01path:" + model_path) : req.name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!loading_.insert(lock_name).second) {
      return MakeError(409, "model '" + (req.name.empty() ? model_path : req.name) + "' is already being loaded");
    }
  }
  struct Unmark {
    ModelRegistry* r;
    std::string n;
    ~Unmark() {
      std::lock_guard<std::mutex> lock(r->mu_);
      r->loading_.erase(n);
    }
  } unmark{this, lock_name};

  pipeline::LoadOptions lo;
  lo.model_path = model_path;
  lo.sidecar_path = config_path;
  lo.name = req.name;
  lo.threads = options_.threads;
  lo.tuning_cache_dir = options_.tuning_cache_dir;
  lo.inference_override = req.inference.ToPipeline();
  lo.max_voxels = options_.max_voxels;
  auto t0 = std::chrono::steady_clock::now();
  Result<std::shared_ptr<pipeline::SegmentationModel>> loaded = loader_(lo);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (metrics_) metrics_->ModelLoad(loaded.ok());
  if (!loaded.ok()) {
    ApiError e = FromStatus(loaded.status(), "cannot load model " + fs::path(req.model_path).filename().string());
    if (e.http_status == 404) e.http_status = 400;  // e.g. a missing sidecar named by the model
    return e;
  }
  std::shared_ptr<pipeline::SegmentationModel> model = std::move(loaded).value();
  if (!model) return MakeError(500, "model loader returned no model");

  auto entry = std::make_shared<ModelEntry>(model, model->info());
  model.reset();
  entry->name = !req.name.empty() ? req.name : SanitizeModelName(entry->info.name.empty()
                                                                      ? fs::path(model_path).stem().string()
                                                                      : entry->info.name);
  entry->backend_type = "onnx";
  entry->model_path = model_path;
  // The sidecar in effect: the one the request named, else NAME.yaml found beside the model.
  entry->config_path = config_path.empty() ? entry->info.sidecar_path : config_path;
  entry->source = spec.source;
  entry->owned_dir = spec.owned_dir;
  entry->requested_inference = req.inference.ToJson();
  entry->load_seconds = seconds;
  entry->loaded_at = std::chrono::system_clock::now();

  std::vector<std::shared_ptr<ModelEntry>> to_unload;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(entry->name);
    if (it != models_.end()) {
      if (!spec.allow_replace) return MakeError(409, "a model named '" + entry->name + "' is already loaded");
      to_unload.push_back(it->second);
    }
    if (spec.replace_current && !current_.empty() && current_ != entry->name) {
      auto cur = models_.find(current_);
      if (cur != models_.end()) {
        to_unload.push_back(cur->second);
        models_.erase(cur);
      }
    }
    models_[entry->name] = entry;
    if (spec.make_current) current_ = entry->name;
  }
  for (auto& old : to_unload) {
    LogInfo("model '", old->name, "' replaced; unloading the previous one");
    old->Unload(options_.unload_wait);
  }
  LogInfo("model '", entry->name, "' loaded from ", model_path, " (", entry->info.backend, ", ",
          entry->info.num_classes, " classes) in ", seconds, " s");
  return entry;
}

ApiResult<nlohmann::json> ModelRegistry::Unload(const std::string& name) {
  std::shared_ptr<ModelEntry> entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it == models_.end()) return MakeError(404, "model '" + name + "' is not loaded");
    entry = it->second;
    models_.erase(it);
    if (current_ == name) current_.clear();
  }
  return UnloadEntry(entry);
}

ApiResult<nlohmann::json> ModelRegistry::UnloadDefault() {
  std::shared_ptr<ModelEntry> entry;
  {
    // Chosen and removed under one lock: a concurrent load cannot change
    // which model this request unloads.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(current_);
    if (it == models_.end() && models_.size() == 1) it = models_.begin();
    if (it == models_.end()) {
      if (models_.empty()) return MakeError(404, "No model loaded");
      std::string names;
      for (const auto& [n, e] : models_) names += (names.empty() ? "" : ", ") + n;
      return MakeError(409, "DELETE /api/model unloads the default model, but " + std::to_string(models_.size()) +
                                " models are loaded (" + names +
                                ") and none was loaded with POST /api/model; unload one with "
                                "DELETE /api/models/{name}");
    }
    entry = it->second;
    models_.erase(it);
    current_.clear();
  }
  return UnloadEntry(entry);
}

ApiResult<nlohmann::json> ModelRegistry::UnloadEntry(const std::shared_ptr<ModelEntry>& entry) {
  const std::string& name = entry->name;
  int running = entry->active();
  bool idle = entry->Unload(options_.unload_wait);
  LogInfo("model '", name, "' unloaded", running ? " after its running requests finished" : "");
  nlohmann::json j = {{"status", "success"}, {"message", "Model " + name + " unloaded"}, {"name", name}};
  j["waited_for_requests"] = running;
  if (!idle) j["message"] = "Model " + name + " unloaded; requests still running on it keep it alive until they end";
  return j;
}

std::shared_ptr<ModelEntry> ModelRegistry::Default() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!current_.empty()) {
    auto it = models_.find(current_);
    if (it != models_.end()) return it->second;
  }
  if (models_.size() == 1) return models_.begin()->second;
  return nullptr;
}

ApiResult<std::shared_ptr<ModelEntry>> ModelRegistry::Resolve(const std::string& name) const {
  if (!name.empty()) {
    auto e = Find(name);
    if (!e) return MakeError(404, "model '" + name + "' is not loaded");
    return e;
  }
  auto d = Default();
  if (d) return d;
  std::lock_guard<std::mutex> lock(mu_);
  if (models_.empty()) return MakeError(400, "No model loaded");
  std::string names;
  for (const auto& [n, e] : models_) names += (names.empty() ? "" : ", ") + n;
  return MakeError(400, "model_name is required when several models are loaded (" + names + ")");
}

std::shared_ptr<ModelEntry> ModelRegistry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<ModelEntry>> ModelRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<ModelEntry>> out;
  for (const auto& [n, e] : models_) out.push_back(e);
  return out;
}

size_t ModelRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_.size();
}

std::vector<std::string> ModelRegistry::LoadDirectory(const std::string& dir) {
  std::vector<std::string> errors;
  std::vector<fs::path> files;
  std::error_code ec;
  // Absolute file paths: a relative model_path would be resolved against the
  // first model root, which is this directory already ("models/models/x.onnx").
  const fs::path base = fs::absolute(dir, ec);
  if (ec) {
    errors.push_back(dir + ": " + ec.message());
    return errors;
  }
  for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".onnx" && it->is_regular_file(ec)) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    LoadSpec spec;
    spec.source = "model_dir";
    spec.allow_replace = false;
    spec.request.model_path = f.string();
    auto r = Load(spec);
    if (!r.ok()) {
      std::string msg = f.filename().string() + ": " + r.error().message;
      Log(LogLevel::kError, "model directory: " + msg);
      errors.push_back(msg);
      startup_errors_.push_back({{"path", f.string()}, {"error", r.error().message}});
    }
  }
  return errors;
}

void ModelRegistry::UnloadAll() {
  std::map<std::string, std::shared_ptr<ModelEntry>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(models_);
    current_.clear();
  }
  for (auto& [n, e] : all) e->Unload(std::chrono::milliseconds(0));
}

}  // namespace itkit::server
