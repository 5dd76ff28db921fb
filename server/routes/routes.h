// One file per route family; each registers its handlers in the route table.
// The status page (GET /, /static/...) is served from server/static/, compiled
// into the binary (routes/static.cpp).
#pragma once

#include "server/app.h"
#include "server/http.h"

namespace itkit::server {

void RegisterHealthRoutes(Router& router, App& app);
void RegisterInfoRoutes(Router& router, App& app);
void RegisterModelRoutes(Router& router, App& app);
void RegisterInferRoutes(Router& router, App& app);
void RegisterJobRoutes(Router& router, App& app);
void RegisterMetricsRoutes(Router& router, App& app);
void RegisterOpenApiRoutes(Router& router, App& app);
void RegisterStaticRoutes(Router& router, App& app);

inline void RegisterAllRoutes(Router& router, App& app) {
  RegisterHealthRoutes(router, app);
  RegisterInfoRoutes(router, app);
  RegisterModelRoutes(router, app);
  RegisterInferRoutes(router, app);
  RegisterJobRoutes(router, app);
  RegisterMetricsRoutes(router, app);
  RegisterOpenApiRoutes(router, app);
  RegisterStaticRoutes(router, app);
}

// Shared by /api/infer and /api/jobs: reads the multipart form, checks the
// image header and builds the job. The upload is removed on any error.
ApiResult<JobInput> PrepareInference(Request& req, App& app);

// JSON of GPUs for info/health/metrics.
nlohmann::json DevicesJson(const DeviceReport& report);

}  // namespace itkit::server
