// Everything the route handlers share. Built once in main(); handlers get it
// by reference. Pipeline entry points are std::functions so tests can run the
// whole HTTP layer against fakes.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "itkit/devices.h"
#include "itkit/pipeline.h"
#include "server/config.h"
#include "server/http.h"
#include "server/job_queue.h"
#include "server/metrics.h"
#include "server/model_registry.h"

namespace itkit::server {

struct App {
  ServerConfig config;
  std::string version;
  Metrics metrics;
  std::unique_ptr<ModelRegistry> models;
  std::unique_ptr<JobQueue> jobs;
  std::function<DeviceReport()> devices;
  std::function<Result<pipeline::ImageHeader>(const std::string&)> read_header;
  std::string temp_dir;    // uploads and results
  std::string upload_dir;  // uploaded models
  std::atomic<bool> shutting_down{false};
  // True from before the port is bound until the --model-dir models have been
  // loaded (or failed): /api/health answers 503 "loading" meanwhile.
  std::atomic<bool> loading_models{false};
  // Uploads and synchronous inferences hold a connection thread for long;
  // capping them keeps threads free for health/info/metrics.
  std::atomic<int> heavy_in_flight{0};
  int heavy_limit = 28;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  int64_t max_upload_bytes() const { return config.max_upload_mb * 1024 * 1024; }
};

// RAII slot for a long request; fails with 503 when all are taken.
class HeavySlot {
 public:
  explicit HeavySlot(App& app) : app_(app) { taken_ = app_.heavy_in_flight.fetch_add(1) < app_.heavy_limit; }
  ~HeavySlot() { app_.heavy_in_flight.fetch_sub(1); }
  HeavySlot(const HeavySlot&) = delete;
  HeavySlot& operator=(const HeavySlot&) = delete;
  bool ok() const { return taken_; }

 private:
  App& app_;
  bool taken_ = false;
};

}  // namespace itkit::server
