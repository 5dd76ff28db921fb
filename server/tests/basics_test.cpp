// Router, auth, parameter parsing, path policy and metrics rendering.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "server/auth.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/params.h"
#include "server/paths.h"

namespace itkit::server {
namespace {

namespace fs = std::filesystem;

TEST(Router, MatchesPatternsAndReportsAllowedMethods) {
  Router r;
  auto h = [](Request&) { return Response(); };
  r.Add("GET", "/api/jobs/{id}", h);
  r.Add("DELETE", "/api/jobs/{id}", h);
  r.Add("GET", "/api/jobs/{id}/result", h);
  r.Add("GET", "/static/{path*}", h);
  auto m = r.Find("GET", "/api/jobs/abc");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params["id"], "abc");
  EXPECT_EQ(r.Find("GET", "/api/jobs/abc/result").route->pattern, "/api/jobs/{id}/result");
  EXPECT_EQ(r.Find("GET", "/api/jobs/abc/").route->pattern, "/api/jobs/{id}");
  auto post = r.Find("POST", "/api/jobs/abc");
  EXPECT_EQ(post.route, nullptr);
  EXPECT_EQ(post.allowed_methods, (std::vector<std::string>{"GET", "DELETE"}));
  EXPECT_EQ(r.Find("GET", "/api/jobs").route, nullptr);
  EXPECT_TRUE(r.Find("GET", "/api/jobs").allowed_methods.empty());
  auto s = r.Find("GET", "/static/js/app.js");
  ASSERT_NE(s.route, nullptr);
  EXPECT_EQ(s.params["path"], "js/app.js");
  EXPECT_EQ(r.Find("GET", "/static").route, nullptr);
  // The most literal pattern wins.
  r.Add("POST", "/api/jobs/special", h);
  auto special = r.Find("GET", "/api/jobs/special");
  EXPECT_EQ(special.route, nullptr);
  EXPECT_EQ(special.allowed_methods, (std::vector<std::string>{"POST"}));
  EXPECT_EQ(r.Find("POST", "/api/jobs/special").route->pattern, "/api/jobs/special");
}

TEST(Request, QueryAndBodyLimits) {
  Request req;
  req.query = "a=1&b=x%20y&c=a+b&d";
  EXPECT_EQ(req.QueryParam("b"), "x y");
  EXPECT_EQ(req.QueryParam("c"), "a b");
  EXPECT_EQ(req.QueryParam("d"), "");
  EXPECT_EQ(req.QueryParam("zz"), "");
  StringBody body(std::string(100, 'x'), 7);
  req.body = &body;
  req.content_length = -1;
  req.body_limit = 50;
  EXPECT_EQ(req.ReadAll().error().http_status, 413);
  StringBody short_body("abc");
  Request r2;
  r2.body = &short_body;
  r2.content_length = 10;
  EXPECT_EQ(r2.ReadAll().error().http_status, 408);
  StringBody slow("abc");
  Request r3;
  r3.body = &slow;
  r3.content_length = 3;
  r3.body_deadline = Clock::now() - std::chrono::seconds(1);
  EXPECT_EQ(r3.ReadAll().error().http_status, 408);
}

TEST(Auth, ConstantTimeCompareAndBearer) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(CheckBearer("", "").ok());
  EXPECT_TRUE(CheckBearer("Bearer k3y", "k3y").ok());
  EXPECT_TRUE(CheckBearer("bearer   k3y ", "k3y").ok());
  EXPECT_EQ(CheckBearer("", "k3y").error().http_status, 401);
  EXPECT_EQ(CheckBearer("Basic k3y", "k3y").error().http_status, 401);
  EXPECT_EQ(CheckBearer("Bearer k3", "k3y").error().http_status, 401);
  EXPECT_EQ(CheckBearer("Bearerk3y", "k3y").error().http_status, 401);
}

TEST(Params, Triples) {
  EXPECT_EQ(ParseTriple("96,96,96", "p").value(), (std::vector<int64_t>{96, 96, 96}));
  EXPECT_EQ(ParseTriple("[64, 32, 16]", "p").value(), (std::vector<int64_t>{64, 32, 16}));
  EXPECT_EQ(ParseTriple("48", "p").value(), (std::vector<int64_t>{48, 48, 48}));
  EXPECT_EQ(ParseTriple("8x8x4", "p").value(), (std::vector<int64_t>{8, 8, 4}));
  for (const char* bad : {"", "1,2", "1,2,3,4", "0,1,1", "-1,2,3", "a,b,c", "99999,1,1", "1.5,2,3",
                          "99999999999999999999999"}) {
    EXPECT_FALSE(ParseTriple(bad, "p").ok()) << bad;
  }
}

TEST(Params, LoadRequest) {
  auto r = ParseLoadRequest(R"({"name":"abdomen","backend_type":"ONNX","model_path":"/m/a.onnx",
      "inference_config":{"patch_size":[96,96,96],"patch_stride":[48,48,48],"fp16":false,"tta":null}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->backend_type, "onnx");
  EXPECT_EQ(*r->inference.patch_size, (std::vector<int64_t>{96, 96, 96}));
  EXPECT_FALSE(*r->inference.fp16);
  EXPECT_FALSE(r->inference.tta.has_value());
  EXPECT_EQ(ParseLoadRequest(R"({"model_path":"x"})")->backend_type, "onnx");
  for (const char* bad : {"", "nope", "[]", R"({"name":5})", R"({"name":"../x"})", R"({"model_path":["a"]})",
                          R"({"inference_config":{"patch_size":[0,1,1]}})",
                          R"({"inference_config":{"patch_size":[1,1]}})",
                          R"({"inference_config":{"blend":"max"}})", R"({"inference_config":{"typo":1}})",
                          R"({"inference_config":{"forward_device":"tpu"}})",
                          R"({"inference_config":{"forward_batch_windows":0}})",
                          R"({"inference_config":{"patch_size":[1e300,1,1]}})", R"({"inference_config":7})"}) {
    auto b = ParseLoadRequest(bad);
    ASSERT_FALSE(b.ok()) << bad;
    EXPECT_EQ(b.error().http_status, 400);
  }
}

TEST(Params, InferFields) {
  auto p = ParseInferParams({{"model_name", "m"}, {"force_cpu", "True"}, {"window_level", "40"},
                             {"window_width", " 400 "}, {"patch_size", "32,32,32"}, {"tta", "1"},
                             {"output_format", ".seg.nrrd"}, {"unknown", "ignored"}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->force_cpu);
  EXPECT_EQ(*p->window_level, 40);
  EXPECT_EQ(*p->window_width, 400);
  EXPECT_TRUE(*p->overrides.tta);
  EXPECT_EQ(p->output_format, "seg.nrrd");
  // Empty values mean "not given", as in the original server.
  auto e = ParseInferParams({{"window_level", ""}, {"force_cpu", ""}});
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->window_level.has_value());
  for (auto bad : std::vector<std::map<std::string, std::string>>{
           {{"force_cpu", "maybe"}}, {{"window_level", "abc"}}, {{"window_width", "0"}}, {{"window_width", "nan"}},
           {{"patch_size", "1,2"}}, {{"blend", "max"}}, {{"output_format", "png"}}, {{"forward_batch_windows", "2.5"}}}) {
    EXPECT_EQ(ParseInferParams(bad).error().http_status, 400);
  }
}

TEST(Params, ModelNames) {
  EXPECT_TRUE(ValidModelName("abdomen_seg-v1.2"));
  EXPECT_FALSE(ValidModelName(""));
  EXPECT_FALSE(ValidModelName(".hidden"));
  EXPECT_FALSE(ValidModelName("a/b"));
  EXPECT_FALSE(ValidModelName(std::string(129, 'a')));
  EXPECT_FALSE(ValidModelName("upload"));
  EXPECT_EQ(SanitizeModelName("Abdomen Seg/v1"), "Abdomen_Seg_v1");
  EXPECT_EQ(SanitizeModelName(""), "model");
  EXPECT_EQ(SanitizeModelName("..x"), "x");
}

class PathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("itkit-paths-" + RandomHex(4));
    fs::create_directories(base_ / "models" / "sub");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "models" / "a.onnx") << "x";
    std::ofstream(base_ / "models" / "sub" / "b.onnx") << "x";
    std::ofstream(base_ / "outside" / "secret.onnx") << "x";
    fs::create_symlink(base_ / "outside" / "secret.onnx", base_ / "models" / "link.onnx");
    fs::create_directory_symlink(base_ / "outside", base_ / "models" / "linkdir");
    policy_.AddRoot((base_ / "models").string());
  }
  void TearDown() override { fs::remove_all(base_); }
  int Status(const std::string& p) {
    auto r = policy_.Resolve(p, "model_path");
    return r.ok() ? 200 : r.error().http_status;
  }
  fs::path base_;
  PathPolicy policy_;
};

TEST_F(PathsTest, ContainmentAfterSymlinks) {
  std::string m = (base_ / "models").string();
  EXPECT_EQ(Status(m + "/a.onnx"), 200);
  EXPECT_EQ(Status("a.onnx"), 200);  // relative to the first root
  EXPECT_EQ(Status("sub/b.onnx"), 200);
  EXPECT_EQ(Status(m + "/sub/../a.onnx"), 200);
  EXPECT_EQ(Status(m + "/../outside/secret.onnx"), 403);
  EXPECT_EQ(Status("../outside/secret.onnx"), 403);
  EXPECT_EQ(Status((base_ / "outside" / "secret.onnx").string()), 403);
  EXPECT_EQ(Status("/etc/passwd"), 403);
  EXPECT_EQ(Status("/nonexistent/file.onnx"), 403);  // outside: no hint whether it exists
  EXPECT_EQ(Status(m + "/link.onnx"), 403);
  EXPECT_EQ(Status(m + "/linkdir/secret.onnx"), 403);
  EXPECT_EQ(Status(m + "/linkdir/missing.onnx"), 403);
  EXPECT_EQ(Status(m + "/missing.onnx"), 404);
  EXPECT_EQ(Status(m + "/sub"), 400);
  EXPECT_EQ(Status(""), 400);
  EXPECT_EQ(Status(std::string("a\0b", 3)), 400);
  EXPECT_EQ(Status(m + "x/a.onnx"), 403);  // sibling with the root as a prefix
  PathPolicy none;
  EXPECT_EQ(none.Resolve(m + "/a.onnx", "model_path").error().http_status, 403);
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.ObserveRequest("/api/infer", "POST", 200, 0.3, 100, 200);
  m.ObserveRequest("/api/infer", "POST", 200, 7, 0, 0);
  m.ObserveStage("windows", 0.02);
  std::string text = m.Render({{"itkit_queue_length", "Waiting.", {{"device", "cpu"}}, 2},
                               {"itkit_queue_length", "Waiting.", {{"device", "cuda"}}, 0},
                               {"itkit_models_loaded", "Models.", {}, 1}});
  EXPECT_NE(text.find("itkit_http_requests_total{endpoint=\"/api/infer\",method=\"POST\",status=\"200\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("itkit_http_request_duration_seconds_bucket{endpoint=\"/api/infer\",le=\"0.5\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("itkit_http_request_duration_seconds_bucket{endpoint=\"/api/infer\",le=\"+Inf\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("itkit_http_request_duration_seconds_count{endpoint=\"/api/infer\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("itkit_inference_stage_duration_seconds_count{stage=\"windows\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE itkit_queue_length gauge\nitkit_queue_length{device=\"cpu\"} 2\n"
                      "itkit_queue_length{device=\"cuda\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("itkit_models_loaded 1\n"), std::string::npos);
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace itkit::server
