// GET /api/health — liveness for clients and load balancers; the only
// endpoint that needs no API key.
#include "server/routes/routes.h"

namespace itkit::server {

void RegisterHealthRoutes(Router& router, App& app) {
  router.Add(
      "GET", "/api/health",
      [&app](Request&) {
        if (app.shutting_down) return Response::Error(MakeError(503, "server is shutting down", 5));
        DeviceReport d = app.devices();
        return Response::Json(200, {{"status", "ok"},
                                    {"cuda_available", d.cuda_available},
                                    {"cuda_device_count", d.cuda_available ? d.gpus.size() : 0},
                                    {"version", app.version}});
      },
      /*requires_auth=*/false);
}

}  // namespace itkit::server
