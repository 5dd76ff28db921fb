// GET /metrics — Prometheus text format. Counters and histograms accumulate in
// Metrics; the gauges below are read at scrape time.
#include <unistd.h>

#include <fstream>

#include "server/routes/routes.h"

namespace itkit::server {

namespace {

double ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

void RegisterMetricsRoutes(Router& router, App& app) {
  router.Add("GET", "/metrics", [&app](Request&) {
    std::vector<GaugeSample> g;
    JobQueue::Stats stats = app.jobs->GetStats();
    for (const auto& [dev, n] : stats.queued_by_device) {
      g.push_back({"itkit_queue_length", "Inference requests waiting, per device.", {{"device", dev}}, double(n)});
    }
    for (const auto& [dev, n] : stats.running_by_device) {
      g.push_back({"itkit_inferences_running", "Inferences running, per device.", {{"device", dev}}, double(n)});
    }
    for (const auto& [state, n] : stats.by_state) {
      g.push_back({"itkit_jobs", "Jobs known to the server, by state.", {{"state", state}}, double(n)});
    }
    g.push_back({"itkit_models_loaded", "Models loaded.", {}, double(app.models->size())});
    DeviceReport d = app.devices();
    g.push_back({"itkit_cuda_available", "1 when a CUDA device is usable.", {}, d.cuda_available ? 1.0 : 0.0});
    for (const auto& gpu : d.gpus) {
      Labels l = {{"gpu", std::to_string(gpu.index)}, {"name", gpu.name}};
      g.push_back({"itkit_gpu_memory_free_bytes", "Free GPU memory.", l, double(gpu.free_bytes)});
      g.push_back({"itkit_gpu_memory_total_bytes", "Total GPU memory.", l, double(gpu.total_bytes)});
    }
    g.push_back({"itkit_long_requests_in_flight", "Uploads and inference requests being served.", {},
                 double(app.heavy_in_flight.load())});
    g.push_back({"itkit_process_resident_memory_bytes", "Resident memory of the server process.", {}, ResidentBytes()});
    g.push_back({"itkit_uptime_seconds", "Seconds since the server started.", {},
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - app.started).count()});
    g.push_back({"itkit_build_info", "Build information.", {{"version", app.version}}, 1});
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = app.metrics.Render(g);
    return r;
  });
}

}  // namespace itkit::server
