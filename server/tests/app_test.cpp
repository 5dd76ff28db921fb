// The route handlers through HttpServer::Dispatch (auth, routing, errors)
// with a fake model loader and image reader: the HTTP layer without the
// pipeline. Also keeps server/openapi.json in sync with the route table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "server/app.h"
#include "server/assets.h"
#include "server/http_server.h"
#include "server/routes/routes.h"
#include "server/tests/fake_model.h"

namespace itkit::server {
namespace {

namespace fs = std::filesystem;
using testing::FakeModel;

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class AppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("itkit-app-" + RandomHex(4));
    fs::create_directories(dir_ / "models");
    fs::create_directories(dir_ / "tmp");
    fs::create_directories(dir_ / "uploads");
    fs::create_directories(dir_ / "outside");
    std::ofstream(dir_ / "models" / "tiny.onnx") << "ONNX";
    std::ofstream(dir_ / "models" / "other.onnx") << "ONNX";
    std::ofstream(dir_ / "models" / "bad.onnx") << "garbage";
    std::ofstream(dir_ / "outside" / "evil.onnx") << "ONNX";
    app_.config.cache_dir = dir_.string();
    app_.config.model_dir = (dir_ / "models").string();
    app_.version = "test";
    app_.temp_dir = (dir_ / "tmp").string();
    app_.upload_dir = (dir_ / "uploads").string();
    app_.devices = [] { return DeviceReport{}; };
    // Fake images: "DIMS a,b,c[,d] COMPONENTS n".
    app_.read_header = [](const std::string& path) -> Result<pipeline::ImageHeader> {
      std::string t = ReadText(path);
      if (t.rfind("DIMS ", 0) != 0) return InvalidArgument("not an image");
      pipeline::ImageHeader h;
      std::stringstream ss(t.substr(5));
      std::string dims;
      ss >> dims;
      for (size_t i = 0; i < dims.size();) {
        size_t j = dims.find(',', i);
        h.size.push_back(std::stoll(dims.substr(i, j - i)));
        i = j == std::string::npos ? dims.size() : j + 1;
      }
      h.dimension = static_cast<int>(h.size.size());
      return h;
    };
    PathPolicy paths;
    paths.AddRoot((dir_ / "models").string());
    paths.AddRoot(app_.upload_dir);
    app_.models = std::make_unique<ModelRegistry>(
        [this](const pipeline::LoadOptions& o) -> Result<std::shared_ptr<pipeline::SegmentationModel>> {
          if (ReadText(o.model_path) != "ONNX") return InvalidArgument("not an ONNX model");
          // forward_device "cuda" stands in for a model loaded on a GPU.
          auto m = FakeModel::Make(o.name.empty() ? fs::path(o.model_path).stem().string() : o.name,
                                   o.inference_override.forward_device.value_or("cpu") == "cuda" ? "cuda" : "cpu");
          if (o.inference_override.patch_size) m->info_.inference.patch_size = *o.inference_override.patch_size;
          last_model_ = m;
          return std::shared_ptr<pipeline::SegmentationModel>(m);
        },
        paths, ModelRegistry::Options{}, &app_.metrics);
    JobQueue::Options jo;
    jo.temp_dir = app_.temp_dir;
    app_.jobs = std::make_unique<JobQueue>(jo, &app_.metrics);
    RegisterAllRoutes(router_, app_);
    HttpServerOptions ho;
    ho.cors_origins = {"*"};
    server_ = std::make_unique<HttpServer>(router_, &app_.metrics, ho);
  }
  void TearDown() override {
    server_.reset();
    app_.jobs.reset();
    app_.models.reset();
    fs::remove_all(dir_);
  }

  Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                const std::string& content_type = "", std::vector<std::pair<std::string, std::string>> headers = {}) {
    StringBody sb(body, 1000);
    Request req;
    req.method = method;
    req.path = path;
    req.headers = std::move(headers);
    if (!content_type.empty()) req.headers.emplace_back("Content-Type", content_type);
    req.content_length = static_cast<int64_t>(body.size());
    req.body_done = body.empty();
    req.body = &sb;
    std::string endpoint;
    return server_->Dispatch(req, &endpoint);
  }
  Response Json(const std::string& method, const std::string& path, const nlohmann::json& j) {
    return Call(method, path, j.dump(), "application/json");
  }
  Response Form(const std::string& path, const std::map<std::string, std::string>& fields,
                const std::string& image, const std::string& filename = "ct.nii.gz") {
    std::string body;
    for (const auto& [k, v] : fields) {
      body += "--BB\r\nContent-Disposition: form-data; name=\"" + k + "\"\r\n\r\n" + v + "\r\n";
    }
    if (!image.empty()) {
      body += "--BB\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + filename + "\"\r\n\r\n" + image +
              "\r\n";
    }
    body += "--BB--\r\n";
    return Call("POST", path, body, "multipart/form-data; boundary=BB");
  }
  static nlohmann::json Body(const Response& r) { return nlohmann::json::parse(r.body, nullptr, false); }
  // Temporary files in use; waits a little for a worker thread to drop its
  // last reference to a finished job.
  size_t TempFiles(size_t expect = 0) const {
    size_t n = 0;
    for (int i = 0; i < 100; ++i) {
      n = 0;
      for (auto& e : fs::directory_iterator(dir_ / "tmp")) n += e.is_regular_file();
      if (n == expect) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return n;
  }

  // Polls a job until it leaves queued/running.
  nlohmann::json WaitJob(const std::string& id) {
    nlohmann::json st;
    for (int i = 0; i < 500; ++i) {
      st = Body(Call("GET", "/api/jobs/" + id));
      if (st["state"] != "queued" && st["state"] != "running") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return st;
  }

  fs::path dir_;
  std::shared_ptr<FakeModel> last_model_;  // the loader's latest model
  App app_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(AppTest, HealthInfoAndErrors) {
  Response h = Call("GET", "/api/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(Body(h)["status"], "ok");
  EXPECT_EQ(Body(h)["cuda_available"], false);
  Response info = Call("GET", "/api/info");
  EXPECT_EQ(info.status, 200);
  EXPECT_EQ(Body(info)["name"], "ITKIT Inference Server");
  EXPECT_TRUE(Body(info)["model"].is_null());
  Response nf = Call("GET", "/api/nothing");
  EXPECT_EQ(nf.status, 404);
  EXPECT_TRUE(Body(nf)["error"].is_string());
  Response na = Call("PUT", "/api/health");
  EXPECT_EQ(na.status, 405);
  Response pre = Call("OPTIONS", "/api/infer");
  EXPECT_EQ(pre.status, 204);
}

TEST_F(AppTest, ApiKeyGuardsEverythingButHealth) {
  HttpServerOptions ho;
  ho.api_key = "k3y";
  server_ = std::make_unique<HttpServer>(router_, &app_.metrics, ho);
  EXPECT_EQ(Call("GET", "/api/health").status, 200);
  EXPECT_EQ(Call("GET", "/").status, 200);
  for (const char* p : {"/api/info", "/api/models", "/metrics", "/api/openapi.json", "/api/jobs", "/api/nothing"}) {
    Response r = Call("GET", p);
    EXPECT_EQ(r.status, 401) << p;
    EXPECT_TRUE(Body(r)["error"].is_string());
  }
  EXPECT_EQ(Call("GET", "/api/info", "", "", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(Call("GET", "/api/info", "", "", {{"Authorization", "Bearer k3y"}}).status, 200);
  EXPECT_EQ(Json("POST", "/api/models", {{"model_path", "tiny.onnx"}}).status, 401);
}

TEST_F(AppTest, LoadListUnload) {
  Response r = Json("POST", "/api/models", {{"name", "m1"}, {"backend_type", "onnx"}, {"model_path", "tiny.onnx"},
                                            {"inference_config", {{"patch_size", {8, 8, 8}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["status"], "success");
  EXPECT_EQ(Body(r)["model"]["patch_size"], nlohmann::json({8, 8, 8}));
  EXPECT_EQ(Json("POST", "/api/models", {{"name", "m2"}, {"model_path", (dir_ / "models" / "other.onnx").string()}}).status,
            200);
  Response list = Call("GET", "/api/models");
  EXPECT_EQ(Body(list)["count"], 2);
  EXPECT_TRUE(Body(list)["default"].is_null());
  EXPECT_EQ(Body(Call("GET", "/api/info"))["models"].size(), 2u);
  EXPECT_EQ(Call("DELETE", "/api/models/m1").status, 200);
  EXPECT_EQ(Call("DELETE", "/api/models/m1").status, 404);
  EXPECT_EQ(Body(Call("GET", "/api/models"))["default"], "m2");

  EXPECT_EQ(Call("POST", "/api/models", "{}", "text/plain").status, 415);
  EXPECT_EQ(Call("POST", "/api/models", "not json", "application/json").status, 400);
  EXPECT_EQ(Json("POST", "/api/models", {{"name", "x"}}).status, 400);
  Response mm = Json("POST", "/api/models", {{"backend_type", "mmengine"}, {"model_path", "tiny.onnx"},
                                             {"config_path", "cfg.py"}});
  EXPECT_EQ(mm.status, 400);
  EXPECT_NE(Body(mm)["error"].get<std::string>().find("tools/export_onnx.py"), std::string::npos);
  EXPECT_EQ(Json("POST", "/api/models", {{"model_path", (dir_ / "outside" / "evil.onnx").string()}}).status, 403);
  EXPECT_EQ(Json("POST", "/api/models", {{"model_path", "../outside/evil.onnx"}}).status, 403);
  EXPECT_EQ(Json("POST", "/api/models", {{"model_path", "missing.onnx"}}).status, 404);
  EXPECT_EQ(Json("POST", "/api/models", {{"model_path", "bad.onnx"}}).status, 400);
}

TEST_F(AppTest, SingleModelApiOfTheUpstreamPlugin) {
  Response r = Json("POST", "/api/model", {{"backend_type", "onnx"}, {"model_path", "tiny.onnx"},
                                           {"inference_config", {{"fp16", false}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["status"], "success");
  EXPECT_EQ(Body(r)["model"]["name"], "tiny");
  nlohmann::json info = Body(Call("GET", "/api/info"));
  EXPECT_EQ(info["model"]["name"], "tiny");
  EXPECT_EQ(info["model"]["loaded"], true);
  EXPECT_EQ(info["model"]["backend_type"], "onnx");
  // Replaces the current one.
  ASSERT_EQ(Json("POST", "/api/model", {{"backend_type", "onnx"}, {"model_path", "other.onnx"}}).status, 200);
  EXPECT_EQ(Body(Call("GET", "/api/models"))["count"], 1);
  Response inf = Form("/api/infer", {{"force_cpu", "false"}, {"window_level", "40"}, {"window_width", "400"}},
                      "DIMS 4,4,4");
  ASSERT_EQ(inf.status, 200) << inf.body;
  EXPECT_EQ(ReadText(inf.file_path), "LABELS:DIMS 4,4,4");
  Response del = Call("DELETE", "/api/model");
  EXPECT_EQ(del.status, 200);
  EXPECT_EQ(Body(del)["status"], "success");
  EXPECT_EQ(Call("DELETE", "/api/model").status, 404);
  EXPECT_EQ(Form("/api/infer", {}, "DIMS 4,4,4").status, 400);  // "No model loaded"
}

TEST_F(AppTest, InferAndJobs) {
  ASSERT_EQ(Json("POST", "/api/models", {{"name", "m"}, {"model_path", "tiny.onnx"}}).status, 200);
  Response r = Form("/api/infer", {{"model_name", "m"}, {"output_format", "seg.nrrd"}}, "DIMS 5,6,7");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/octet-stream");
  EXPECT_NE(std::find(r.headers.begin(), r.headers.end(),
                      std::pair<std::string, std::string>{"Content-Disposition",
                                                          "attachment; filename=\"segmentation.seg.nrrd\""}),
            r.headers.end());
  EXPECT_NE(r.server_timing.find("upload;dur="), std::string::npos);
  EXPECT_EQ(TempFiles(1), 1u);  // the result, until the response is gone
  r = Response();
  EXPECT_EQ(TempFiles(), 0u);

  struct Case {
    std::map<std::string, std::string> fields;
    std::string image;
    int status;
  };
  for (const Case& c : std::vector<Case>{{{{"model_name", "nope"}}, "DIMS 4,4,4", 404},
                                         {{{"model_name", "m"}}, "", 400},
                                         {{{"model_name", "m"}}, "random bytes", 400},
                                         {{{"model_name", "m"}}, "DIMS 4,4,4,2", 400},
                                         {{{"model_name", "m"}}, "DIMS 4,0,4", 400},
                                         {{{"model_name", "m"}}, "DIMS 100000,100000,100000", 413},
                                         {{{"model_name", "m"}, {"patch_size", "1,2"}}, "DIMS 4,4,4", 400}}) {
    Response bad = Form("/api/infer", c.fields, c.image);
    EXPECT_EQ(bad.status, c.status) << c.image << " " << bad.body;
    EXPECT_TRUE(Body(bad)["error"].is_string());
  }
  EXPECT_EQ(Form("/api/infer", {{"model_name", "m"}}, "DIMS 4,4,4", "image.png").status, 400);
  EXPECT_EQ(Call("POST", "/api/infer", "{}", "application/json").status, 415);
  EXPECT_EQ(TempFiles(), 0u);

  Response sub = Form("/api/jobs", {{"model_name", "m"}}, "DIMS 4,4,4");
  ASSERT_EQ(sub.status, 202) << sub.body;
  std::string id = Body(sub)["id"];
  nlohmann::json st;
  for (int i = 0; i < 200; ++i) {
    st = Body(Call("GET", "/api/jobs/" + id));
    if (st["state"] == "done") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(st["state"], "done");
  Response res = Call("GET", "/api/jobs/" + id + "/result");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(ReadText(res.file_path), "LABELS:DIMS 4,4,4");
  EXPECT_EQ(Body(Call("GET", "/api/jobs"))["count"], 1);
  EXPECT_EQ(Call("DELETE", "/api/jobs/" + id).status, 200);
  EXPECT_EQ(Call("GET", "/api/jobs/" + id).status, 404);
  EXPECT_EQ(Call("DELETE", "/api/jobs/" + id).status, 404);
}

// Bug: health said "ok" while the --model-dir models were still loading, so
// clients that poll health and then infer got "not loaded".
TEST_F(AppTest, HealthSaysLoadingUntilTheModelDirIsLoaded) {
  app_.loading_models = true;
  Response h = Call("GET", "/api/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(Body(h)["status"], "loading");
  EXPECT_TRUE(Body(h)["error"].is_string());
  EXPECT_NE(std::find(h.headers.begin(), h.headers.end(), std::pair<std::string, std::string>{"Retry-After", "1"}),
            h.headers.end());
  // An inference for a model that is not there yet: 503 too, not 404/400.
  Response inf = Form("/api/infer", {{"model_name", "tiny"}}, "DIMS 4,4,4");
  EXPECT_EQ(inf.status, 503) << inf.body;
  EXPECT_EQ(Form("/api/jobs", {}, "DIMS 4,4,4").status, 503);
  EXPECT_EQ(app_.models->LoadDirectory(app_.config.model_dir).size(), 1u);  // bad.onnx
  app_.loading_models = false;
  h = Call("GET", "/api/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(Body(h)["status"], "ok");
  EXPECT_EQ(Form("/api/infer", {{"model_name", "tiny"}}, "DIMS 4,4,4").status, 200);
  EXPECT_EQ(Form("/api/infer", {{"model_name", "nope"}}, "DIMS 4,4,4").status, 404);
  app_.shutting_down = true;
  h = Call("GET", "/api/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(Body(h)["status"], "shutting_down");
}

// Bug: LoadDirectory("models") (a relative --model-dir) joined the path twice
// ("models/models/x.onnx") and loaded nothing.
TEST_F(AppTest, LoadDirectoryWithARelativePath) {
  fs::path old = fs::current_path();
  fs::current_path(dir_);
  PathPolicy paths;
  paths.AddRoot("models");
  ModelRegistry registry(
      [](const pipeline::LoadOptions& o) -> Result<std::shared_ptr<pipeline::SegmentationModel>> {
        if (ReadText(o.model_path) != "ONNX") return InvalidArgument("not an ONNX model");
        return std::shared_ptr<pipeline::SegmentationModel>(FakeModel::Make(fs::path(o.model_path).stem().string()));
      },
      paths, ModelRegistry::Options{}, nullptr);
  std::vector<std::string> errors = registry.LoadDirectory("models");
  fs::current_path(old);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("bad.onnx"), std::string::npos) << errors[0];
  ASSERT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.Find("tiny")->model_path, (dir_ / "models" / "tiny.onnx").string());
}

// DELETE /api/model unloads the default model: the one POST /api/model
// loaded, else the only one. Several and none default: 409, naming them.
TEST_F(AppTest, SingleModelDeleteWithSeveralModels) {
  ASSERT_EQ(Json("POST", "/api/models", {{"name", "m1"}, {"model_path", "tiny.onnx"}}).status, 200);
  ASSERT_EQ(Json("POST", "/api/models", {{"name", "m2"}, {"model_path", "tiny.onnx"}}).status, 200);
  Response amb = Call("DELETE", "/api/model");
  EXPECT_EQ(amb.status, 409) << amb.body;
  std::string msg = Body(amb)["error"];
  EXPECT_NE(msg.find("m1, m2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("DELETE /api/models/{name}"), std::string::npos) << msg;
  EXPECT_EQ(Body(Call("GET", "/api/models"))["count"], 2);  // nothing unloaded

  ASSERT_EQ(Json("POST", "/api/model", {{"backend_type", "onnx"}, {"model_path", "other.onnx"}}).status, 200);
  Response del = Call("DELETE", "/api/model");
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(Body(del)["name"], "other");
  EXPECT_EQ(Body(del)["message"], "Model other unloaded");
  EXPECT_EQ(Call("DELETE", "/api/model").status, 409);  // m1 and m2 again
  ASSERT_EQ(Call("DELETE", "/api/models/m2").status, 200);
  del = Call("DELETE", "/api/model");  // the only one left
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(Body(del)["name"], "m1");
  Response none = Call("DELETE", "/api/model");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(Body(none)["error"], "No model loaded");
}

// force_cpu (ITKIT's meaning): host accumulation, the network stays on the
// model's device and the request in its queue. forward_device=cpu moves the
// network (and the queue) to the CPU.
TEST_F(AppTest, ForceCpuAccumulatesOnTheHostAndForwardDeviceMovesTheNetwork) {
  ASSERT_EQ(Json("POST", "/api/models", {{"name", "g"}, {"model_path", "tiny.onnx"},
                                         {"inference_config", {{"forward_device", "cuda"}}}})
                .status,
            200);
  std::shared_ptr<FakeModel> gpu = last_model_;
  ASSERT_EQ(gpu->info().backend, "cuda");
  Response sub = Form("/api/jobs", {{"model_name", "g"}, {"force_cpu", "true"}}, "DIMS 4,4,4");
  ASSERT_EQ(sub.status, 202) << sub.body;
  EXPECT_EQ(Body(sub)["device"], "cuda");
  nlohmann::json st = WaitJob(Body(sub)["id"]);
  ASSERT_EQ(st["state"], "done") << st.dump();
  EXPECT_TRUE(gpu->last_request.force_cpu);
  EXPECT_FALSE(gpu->last_request.inference_override.forward_device.has_value());
  EXPECT_EQ(gpu->last_request.inference_override.accumulate_device.value_or(""), "cpu");
  EXPECT_EQ(st["network_device"], "cuda");
  EXPECT_EQ(st["accumulate_device"], "cpu");

  sub = Form("/api/jobs", {{"model_name", "g"}, {"forward_device", "CPU"}}, "DIMS 4,4,4");
  ASSERT_EQ(sub.status, 202) << sub.body;
  EXPECT_EQ(Body(sub)["device"], "cpu");
  st = WaitJob(Body(sub)["id"]);
  ASSERT_EQ(st["state"], "done") << st.dump();
  EXPECT_FALSE(gpu->last_request.force_cpu);
  EXPECT_EQ(gpu->last_request.inference_override.forward_device.value_or(""), "cpu");
  EXPECT_EQ(Form("/api/jobs", {{"model_name", "g"}, {"forward_device", "tpu"}}, "DIMS 4,4,4").status, 400);

  sub = Form("/api/jobs", {{"model_name", "g"}, {"force_cpu", "false"}}, "DIMS 4,4,4");
  ASSERT_EQ(sub.status, 202) << sub.body;
  EXPECT_EQ(Body(sub)["device"], "cuda");
  st = WaitJob(Body(sub)["id"]);
  ASSERT_EQ(st["state"], "done") << st.dump();
  EXPECT_EQ(st["network_device"], "cuda");
  EXPECT_EQ(st["accumulate_device"], "cuda");
  EXPECT_FALSE(gpu->last_request.force_cpu);
  EXPECT_FALSE(gpu->last_request.inference_override.forward_device.has_value());
  EXPECT_FALSE(gpu->last_request.inference_override.accumulate_device.has_value());
}

TEST_F(AppTest, MetricsAndStatusPage) {
  Response m = Call("GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("itkit_queue_length{device=\"cpu\"} 0"), std::string::npos);
  EXPECT_NE(m.body.find("itkit_models_loaded 0"), std::string::npos);
  Response page = Call("GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(Call("GET", "/static/missing.js").status, 404);
}

TEST_F(AppTest, ExceptionsBecome500) {
  Router r;
  r.Add("GET", "/boom", [](Request&) -> Response { throw std::runtime_error("kaboom"); });
  HttpServer s(r, &app_.metrics, HttpServerOptions{});
  Request req;
  req.method = "GET";
  req.path = "/boom";
  std::string endpoint;
  Response resp = s.Dispatch(req, &endpoint);
  EXPECT_EQ(resp.status, 500);
  EXPECT_TRUE(Body(resp)["error"].is_string());
}

// Every route is described in openapi.json and every described operation
// exists, so the document cannot drift from the server.
TEST_F(AppTest, OpenApiMatchesTheRouteTable) {
  const Asset* a = FindAsset("openapi.json");
  ASSERT_NE(a, nullptr);
  nlohmann::json doc = nlohmann::json::parse(a->data, nullptr, false);
  ASSERT_FALSE(doc.is_discarded());
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  std::set<std::string> routes, described;
  for (const Route& r : router_.routes()) {
    std::string p = std::regex_replace(r.pattern, std::regex(R"(\{(\w+)\*\})"), "{$1}");
    std::string m = r.method;
    for (auto& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    routes.insert(m + " " + p);
  }
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method != "parameters") described.insert(method + " " + path);
    }
  }
  EXPECT_EQ(routes, described);
  Response served = Call("GET", "/api/openapi.json");
  EXPECT_EQ(served.status, 200);
  EXPECT_EQ(Body(served), doc);
}

}  // namespace
}  // namespace itkit::server
