// GET /api/openapi.json — the API description, server/openapi.json compiled
// into the binary. A unit test keeps it in sync with the route table.
#include "server/assets.h"
#include "server/routes/routes.h"

namespace itkit::server {

void RegisterOpenApiRoutes(Router& router, App& /*app*/) {
  router.Add("GET", "/api/openapi.json", [](Request&) {
    const Asset* a = FindAsset("openapi.json");
    if (a == nullptr) return Response::Error(500, "OpenAPI description missing from this build");
    Response r;
    r.body = std::string(a->data);
    return r;
  });
}

}  // namespace itkit::server
