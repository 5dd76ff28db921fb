// GET /api/info — server, models and devices. Keeps the fields the upstream
// ITKIT Slicer plugin reads: name, cuda_available, device_count and "model"
// (the default model, with "loaded"), plus "models" keyed by name.
#include "server/routes/routes.h"

namespace itkit::server {

nlohmann::json DevicesJson(const DeviceReport& report) {
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : report.gpus) {
    gpus.push_back({{"index", g.index},
                    {"name", g.name},
                    {"free_bytes", g.free_bytes},
                    {"total_bytes", g.total_bytes},
                    {"compute_capability", std::to_string(g.compute_major) + "." + std::to_string(g.compute_minor)}});
  }
  return gpus;
}

void RegisterInfoRoutes(Router& router, App& app) {
  router.Add("GET", "/api/info", [&app](Request&) {
    DeviceReport d = app.devices();
    nlohmann::json models = nlohmann::json::object();
    for (const auto& e : app.models->List()) models[e->name] = e->ToJson();
    auto def = app.models->Default();
    size_t free_bytes = 0, total_bytes = 0;
    for (const auto& g : d.gpus) {
      free_bytes += g.free_bytes;
      total_bytes += g.total_bytes;
    }
    JobQueue::Stats stats = app.jobs->GetStats();
    nlohmann::json j = {
        {"name", "ITKIT Inference Server"},
        {"server", "itkit_server"},
        {"version", app.version},
        {"model", def ? def->ToJson() : nlohmann::json(nullptr)},
        {"models", models},
        {"cuda_available", d.cuda_available},
        {"device_count", d.cuda_available ? d.gpus.size() : 0},
        {"cuda_device_count", d.cuda_available ? d.gpus.size() : 0},
        {"devices", DevicesJson(d)},
        {"gpu_memory", {{"free_bytes", free_bytes}, {"total_bytes", total_bytes}}},
        {"queue", {{"waiting", stats.queued_by_device}, {"running", stats.running_by_device}, {"capacity_per_device", app.config.queue}}},
        {"limits",
         {{"max_upload_mb", app.config.max_upload_mb},
          {"request_timeout_s", app.config.request_timeout},
          {"max_voxels", app.config.max_voxels},
          {"job_ttl_s", app.config.job_ttl}}},
        {"auth_required", !app.config.api_key.empty()},
        {"tls", !app.config.tls_cert.empty()},
        {"model_dir", app.config.model_dir.empty() ? nlohmann::json(nullptr) : nlohmann::json(app.config.model_dir)},
        {"model_roots", app.models->paths().roots()},
        {"failed_models", app.models->startup_errors()},
    };
    if (!d.cuda_available) j["cuda_unavailable_reason"] = d.cuda_unavailable_reason;
    return Response::Json(200, j);
  });
}

}  // namespace itkit::server
