// GET /api/health — readiness for clients and load balancers: 200 "ok" once
// the --model-dir models are loaded, 503 "loading" before, 503
// "shutting_down" after SIGTERM. Needs no API key.
#include "server/routes/routes.h"

namespace itkit::server {

void RegisterHealthRoutes(Router& router, App& app) {
  router.Add(
      "GET", "/api/health",
      [&app](Request&) {
        // Not ready: 503, so clients and probes that poll health before
        // inferring wait; "status" says why (the body is an error object too).
        auto not_ready = [&app](const char* status, const std::string& message, int retry_after) {
          Response r = Response::Error(MakeError(503, message, retry_after));
          r.body = nlohmann::json{{"status", status}, {"error", message}, {"version", app.version}}.dump();
          return r;
        };
        if (app.shutting_down) return not_ready("shutting_down", "server is shutting down", 5);
        if (app.loading_models) {
          return not_ready("loading",
                           "loading the --model-dir models (" + std::to_string(app.models->size()) +
                               " loaded so far); retry shortly",
                           1);
        }
        DeviceReport d = app.devices();
        return Response::Json(200, {{"status", "ok"},
                                    {"cuda_available", d.cuda_available},
                                    {"cuda_device_count", d.cuda_available ? d.gpus.size() : 0},
                                    {"version", app.version}});
      },
      /*requires_auth=*/false);
}

}  // namespace itkit::server
