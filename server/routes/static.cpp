// The status page hook: GET / serves server/static/index.html and
// GET /static/<path> the other files of server/static/, all compiled into the
// binary. Public (no API key): these files hold no data; the page's scripts
// call the authenticated API.
#include "server/assets.h"
#include "server/routes/routes.h"

namespace itkit::server {

namespace {

Response Serve(const std::string& rel) {
  if (rel.find("..") != std::string::npos) return Response::Error(404, "not found");
  const Asset* a = FindAsset("static/" + rel);
  if (a == nullptr) return Response::Error(404, "not found: /static/" + rel);
  Response r;
  r.content_type = std::string(a->content_type);
  r.body = std::string(a->data);
  return r;
}

}  // namespace

void RegisterStaticRoutes(Router& router, App&) {
  router.Add("GET", "/", [](Request&) { return Serve("index.html"); }, /*requires_auth=*/false);
  router.Add("GET", "/static/{path*}", [](Request& req) { return Serve(req.params["path"]); },
             /*requires_auth=*/false);
}

}  // namespace itkit::server
