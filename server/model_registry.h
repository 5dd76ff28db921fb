// The loaded models, by name. Loading runs outside the lock (it can take a
// while); unloading waits for requests running on the model, then drops the
// model so its (GPU) memory is freed before the unload request is answered.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "itkit/pipeline.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/params.h"
#include "server/paths.h"

namespace itkit::server {

class ModelEntry {
 public:
  ModelEntry(std::shared_ptr<pipeline::SegmentationModel> model, pipeline::ModelInfo info);
  ~ModelEntry();

  std::string name;
  std::string backend_type = "onnx";
  std::string model_path;   // as resolved
  std::string config_path;  // sidecar, "" if none given
  std::string source;       // "model_dir" | "request" | "upload"
  std::string owned_dir;    // uploaded model files: removed with the entry
  nlohmann::json requested_inference;  // what the load request set
  pipeline::ModelInfo info;            // merged metadata < sidecar < request
  double load_seconds = 0;
  std::chrono::system_clock::time_point loaded_at;

  // Returns nullptr once the model is unloaded. Every successful Acquire must
  // be paired with Release after the returned pointer is dropped.
  std::shared_ptr<pipeline::SegmentationModel> Acquire();
  void Release();
  bool unloaded() const;
  int active() const;

  // Refuses new users, waits (up to timeout) for running ones, drops the model.
  // Returns false when running requests were still active at the timeout.
  bool Unload(std::chrono::milliseconds timeout);

  // The "device" queue requests on this model go to (cpu when the request runs
  // its network on the CPU).
  std::string Device(bool network_on_cpu) const {
    return (!network_on_cpu && info.backend == "cuda") ? "cuda" : "cpu";
  }

  nlohmann::json ToJson() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<pipeline::SegmentationModel> model_;
  int active_ = 0;
  bool unloaded_ = false;
};

// Holds an acquired model for the duration of one inference.
class ModelUse {
 public:
  explicit ModelUse(std::shared_ptr<ModelEntry> entry);
  ~ModelUse();
  ModelUse(const ModelUse&) = delete;
  ModelUse& operator=(const ModelUse&) = delete;
  pipeline::SegmentationModel* get() const { return model_.get(); }
  explicit operator bool() const { return model_ != nullptr; }

 private:
  std::shared_ptr<ModelEntry> entry_;
  std::shared_ptr<pipeline::SegmentationModel> model_;
};

struct LoadSpec {
  LoadRequest request;
  std::string source = "request";
  std::string owned_dir;        // uploads: directory removed with the model
  bool trusted_paths = false;   // uploads: paths we created ourselves
  bool make_current = false;    // single-model API: becomes the default model
  bool replace_current = false; // single-model API: unload the previous default
  bool allow_replace = true;    // false: a loaded model with the same name is a 409
};

class ModelRegistry {
 public:
  using Loader = std::function<Result<std::shared_ptr<pipeline::SegmentationModel>>(const pipeline::LoadOptions&)>;

  struct Options {
    int threads = 0;
    std::string tuning_cache_dir;
    int64_t max_voxels = pipeline::kDefaultMaxVoxels;
    std::chrono::milliseconds unload_wait{600000};
  };
  ModelRegistry(Loader loader, PathPolicy paths, Options options, Metrics* metrics);

  ApiResult<std::shared_ptr<ModelEntry>> Load(const LoadSpec& spec);
  // Unloads by name; 404 when unknown.
  ApiResult<nlohmann::json> Unload(const std::string& name);
  // The single-model API's DELETE /api/model: unloads the default model (see
  // Default). 404 when no model is loaded; 409 when several are loaded and
  // none was made default by POST /api/model (the message lists them).
  ApiResult<nlohmann::json> UnloadDefault();
  // The default model: the single-model API's current one, else the only one.
  std::shared_ptr<ModelEntry> Default() const;
  // "" = the default model; 400 when ambiguous, 404 when unknown or none.
  ApiResult<std::shared_ptr<ModelEntry>> Resolve(const std::string& name) const;
  std::shared_ptr<ModelEntry> Find(const std::string& name) const;
  std::vector<std::shared_ptr<ModelEntry>> List() const;
  size_t size() const;

  // Loads every *.onnx in dir (sorted); failures are logged and returned.
  std::vector<std::string> LoadDirectory(const std::string& dir);
  void UnloadAll();

  const PathPolicy& paths() const { return paths_; }
  const std::vector<nlohmann::json>& startup_errors() const { return startup_errors_; }

 private:
  // Waits for the entry's running requests and frees it (already removed).
  ApiResult<nlohmann::json> UnloadEntry(const std::shared_ptr<ModelEntry>& entry);

  Loader loader_;
  PathPolicy paths_;
  Options options_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<ModelEntry>> models_;
  std::set<std::string> loading_;
  std::string current_;
  std::vector<nlohmann::json> startup_errors_;
};

}  // namespace itkit::server
