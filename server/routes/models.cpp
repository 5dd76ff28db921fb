// Model management: /api/models (several named models), /api/models/upload
// (for a remote server that cannot see the client's files) and the upstream
// plugin's single-model /api/model.
#include <filesystem>

#include "itkit/log.h"
#include "server/multipart.h"
#include "server/params.h"
#include "server/routes/routes.h"

namespace itkit::server {

namespace fs = std::filesystem;

namespace {

ApiStatus RequireJson(const Request& req) {
  HeaderValue ct = ParseHeaderValue(req.Header("Content-Type"));
  if (ct.value != "application/json") {
    return MakeError(415, "Content-Type must be application/json (got '" +
                              (ct.value.empty() ? std::string("none") : ct.value) + "')");
  }
  return ApiOk();
}

ApiResult<LoadRequest> ReadLoadRequest(Request& req) {
  ApiStatus ct = RequireJson(req);
  if (!ct.ok()) return ct.error();
  req.body_limit = 1 << 20;
  auto body = req.ReadAll();
  if (!body.ok()) return body.error();
  return ParseLoadRequest(body.value());
}

Response Loaded(const std::shared_ptr<ModelEntry>& e) {
  Response r = Response::Json(200, {{"status", "success"}, {"model", e->ToJson()}});
  r.log_model = e->name;
  return r;
}

Response LoadModel(Request& req, App& app) {
  auto lr = ReadLoadRequest(req);
  if (!lr.ok()) return Response::Error(lr.error());
  LoadSpec spec;
  spec.request = lr.value();
  auto entry = app.models->Load(spec);
  if (!entry.ok()) return Response::Error(entry.error());
  return Loaded(entry.value());
}

Response ListModels(App& app) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : app.models->List()) list.push_back(e->ToJson());
  auto def = app.models->Default();
  return Response::Json(200, {{"models", list},
                              {"count", list.size()},
                              {"default", def ? nlohmann::json(def->name) : nlohmann::json(nullptr)}});
}

Response UnloadModel(const std::string& name, App& app) {
  auto r = app.models->Unload(name);
  if (!r.ok()) return Response::Error(r.error());
  Response resp = Response::Json(200, r.value());
  resp.log_model = name;
  return resp;
}

// Moves an uploaded temporary file into the model's staging directory.
ApiStatus Place(UploadedFile& f, const std::string& path) {
  if (::rename(f.file->path().c_str(), path.c_str()) != 0) {
    return MakeError(500, "cannot store the uploaded model file");
  }
  f.file->Release();
  return ApiOk();
}

Response UploadModel(Request& req, App& app) {
  HeavySlot slot(app);
  if (!slot.ok()) return Response::Error(MakeError(503, "server busy with uploads and inferences; retry later", 5));
  req.body_limit = app.max_upload_bytes();
  FormOptions fo;
  fo.temp_dir = app.temp_dir;
  fo.file_fields = {"model", "sidecar"};
  auto form = ReadMultipartForm(req, fo);
  if (!form.ok()) return Response::Error(form.error());
  auto model = form->files.find("model");
  if (model == form->files.end()) return Response::Error(400, "form field 'model' (the .onnx file) is required");
  if (model->second.size == 0) return Response::Error(400, "the uploaded model file is empty");

  LoadSpec spec;
  spec.source = "upload";
  spec.trusted_paths = true;
  if (auto it = form->fields.find("name"); it != form->fields.end() && !it->second.empty()) {
    if (!ValidModelName(it->second)) {
      return Response::Error(400, "name must be 1-128 characters of letters, digits, '.', '_' or '-'");
    }
    spec.request.name = it->second;
  }
  if (auto it = form->fields.find("inference_config"); it != form->fields.end() && !it->second.empty()) {
    nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
    if (j.is_discarded()) return Response::Error(400, "inference_config is not valid JSON");
    auto o = ParseInferenceConfigJson(j);
    if (!o.ok()) return Response::Error(o.error());
    spec.request.inference = o.value();
  }
  // Stage the files as NAME.onnx (+ NAME.yaml) in a directory of their own;
  // the directory goes away when the model is unloaded.
  std::string stem = SanitizeModelName(
      !spec.request.name.empty() ? spec.request.name : fs::path(model->second.filename).stem().string());
  if (stem.size() > 5 && stem.substr(stem.size() - 5) == ".onnx") stem.resize(stem.size() - 5);
  std::string dir = UniqueTempPath(app.upload_dir, "model", "");
  Status mk = MakeDirs(dir);
  if (!mk.ok()) return Response::Error(500, "cannot create a directory for the uploaded model");
  struct DirGuard {
    std::string d;
    ~DirGuard() { RemoveTree(d); }
  } guard{dir};
  spec.request.model_path = dir + "/" + stem + ".onnx";
  ApiStatus st = Place(model->second, spec.request.model_path);
  if (!st.ok()) return Response::Error(st.error());
  if (auto sc = form->files.find("sidecar"); sc != form->files.end() && sc->second.size > 0) {
    spec.request.config_path = dir + "/" + stem + ".yaml";
    st = Place(sc->second, spec.request.config_path);
    if (!st.ok()) return Response::Error(st.error());
  }
  spec.owned_dir = dir;
  auto entry = app.models->Load(spec);
  if (!entry.ok()) return Response::Error(entry.error());
  guard.d.clear();  // now owned by the model entry
  return Loaded(entry.value());
}

// Upstream single-model API: the model is named after the file's stem and
// replaces the current one.
Response LoadSingleModel(Request& req, App& app) {
  auto lr = ReadLoadRequest(req);
  if (!lr.ok()) return Response::Error(lr.error());
  LoadSpec spec;
  spec.request = lr.value();
  if (spec.request.model_path.empty()) return Response::Error(400, "Model path is required");
  spec.request.name = SanitizeModelName(fs::path(spec.request.model_path).stem().string());
  spec.make_current = true;
  spec.replace_current = true;
  auto entry = app.models->Load(spec);
  if (!entry.ok()) return Response::Error(entry.error());
  return Loaded(entry.value());
}

}  // namespace

void RegisterModelRoutes(Router& router, App& app) {
  router.Add("GET", "/api/models", [&app](Request&) { return ListModels(app); });
  router.Add("POST", "/api/models", [&app](Request& req) { return LoadModel(req, app); });
  router.Add("POST", "/api/models/upload", [&app](Request& req) { return UploadModel(req, app); });
  router.Add("GET", "/api/models/{name}", [&app](Request& req) {
    auto e = app.models->Find(req.params["name"]);
    if (!e) return Response::Error(404, "model '" + req.params["name"] + "' is not loaded");
    return Response::Json(200, e->ToJson());
  });
  router.Add("DELETE", "/api/models/{name}", [&app](Request& req) { return UnloadModel(req.params["name"], app); });
  router.Add("POST", "/api/model", [&app](Request& req) { return LoadSingleModel(req, app); });
  // Upstream single-model API: unloads the default model (the one from
  // POST /api/model, else the only one); see ModelRegistry::UnloadDefault.
  router.Add("DELETE", "/api/model", [&app](Request&) {
    auto r = app.models->UnloadDefault();
    if (!r.ok()) return Response::Error(r.error());
    Response resp = Response::Json(200, r.value());
    resp.log_model = r.value().value("name", "");
    return resp;
  });
}

}  // namespace itkit::server
