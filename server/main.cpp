// itkit_server: wires configuration, the model registry, the job queue and the
// HTTP server together, then waits for SIGINT/SIGTERM and shuts down in order:
// refuse new work, let running inferences finish (or cancel them after the
// grace period), stop HTTP, free the models (GPU memory).
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <thread>

#include <civetweb.h>

#include "itkit/devices.h"
#include "itkit/log.h"
#include "itkit/pipeline.h"
#include "server/app.h"
#include "server/config.h"
#include "server/http_server.h"
#include "server/routes/routes.h"
#include "server/temp_files.h"

#ifndef ITKIT_SERVER_VERSION
#define ITKIT_SERVER_VERSION "0.0.0"
#endif

namespace {

using namespace itkit;
using namespace itkit::server;

void InstallLogSink() {
  SetLogSink([](LogLevel level, std::string_view message) {
    static const char* kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
    std::tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    std::fprintf(stderr, "%s.%03dZ %s %.*s\n", ts, ms, kNames[static_cast<int>(level)],
                 static_cast<int>(message.size()), message.data());
    std::fflush(stderr);
  });
}

// Loads the CivetWeb/OpenSSL 3 shim (tls_compat.c) from next to the binary or
// ../lib, before CivetWeb loads libssl. Without it (an OpenSSL 1.1 system),
// CivetWeb finds libssl itself.
void LoadTlsCompat() {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  std::string dir(exe);
  dir.erase(dir.rfind('/'));
  for (const std::string& p : {dir + "/libitkit_tls_compat.so", dir + "/../lib/libitkit_tls_compat.so"}) {
    if (::access(p.c_str(), R_OK) == 0 && ::dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return;
  }
}

int Run(int argc, char** argv) {
  // Signals are taken synchronously by sigwait in main; every thread started
  // from here on (CivetWeb's, the job workers) inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto cl = ParseCommandLine(argc, argv);
  if (!cl.ok()) {
    std::fprintf(stderr, "itkit_server: %s\n", cl.status().message().c_str());
    return 2;
  }
  if (cl->help) {
    std::fputs(HelpText().c_str(), stdout);
    return 0;
  }
  if (cl->version) {
    std::printf("itkit_server %s\n", ITKIT_SERVER_VERSION);
    return 0;
  }
  ServerConfig config = cl->config;
  if (Status st = FinalizeConfig(&config); !st.ok()) {
    std::fprintf(stderr, "itkit_server: %s\n", st.message().c_str());
    return 2;
  }
  InstallLogSink();
  SetLogLevel(config.debug ? LogLevel::kDebug : LogLevel::kInfo);
  if (!config.tls_cert.empty()) LoadTlsCompat();
  mg_init_library(config.tls_cert.empty() ? 0 : MG_FEATURES_TLS);

  App app;
  app.config = config;
  app.version = ITKIT_SERVER_VERSION;
  app.devices = [] { return QueryDevices(); };
  // No cap here: the route compares the size with --max-voxels itself, to
  // answer 413 rather than "unreadable".
  app.read_header = [](const std::string& path) {
    return pipeline::ReadImageHeader(path, std::numeric_limits<int64_t>::max());
  };
  app.temp_dir = config.cache_dir + "/tmp";
  app.upload_dir = config.cache_dir + "/models";
  for (const std::string& dir : {app.temp_dir, app.upload_dir}) {
    if (Status st = MakeDirs(dir); !st.ok()) {
      std::fprintf(stderr, "itkit_server: %s\n", st.message().c_str());
      return 2;
    }
    CleanTempDir(dir);  // leftovers of a previous run that did not exit cleanly
  }
  app.heavy_limit = std::max(1, config.http_threads - 4);

  PathPolicy paths;
  if (!config.model_dir.empty()) paths.AddRoot(config.model_dir);
  for (const auto& r : config.model_roots) paths.AddRoot(r);
  paths.AddRoot(app.upload_dir);
  ModelRegistry::Options mo;
  mo.threads = config.threads;
  mo.tuning_cache_dir = config.cache_dir + "/tuning";
  mo.max_voxels = config.max_voxels;
  mo.unload_wait = std::chrono::milliseconds(static_cast<int64_t>(config.request_timeout * 1000));
  app.models = std::make_unique<ModelRegistry>(
      [](const pipeline::LoadOptions& o) { return pipeline::SegmentationModel::Load(o); }, paths, mo, &app.metrics);
  JobQueue::Options jo;
  jo.capacity_per_device = config.queue;
  jo.workers_per_device = config.device_workers;
  jo.time_limit_s = config.request_timeout;
  jo.ttl_s = config.job_ttl;
  jo.max_jobs = config.max_jobs;
  jo.temp_dir = app.temp_dir;
  app.jobs = std::make_unique<JobQueue>(jo, &app.metrics);

  Router router;
  RegisterAllRoutes(router, app);
  HttpServerOptions ho;
  ho.host = config.host;
  ho.port = config.port;
  ho.threads = config.http_threads;
  ho.io_timeout_s = config.io_timeout;
  ho.upload_timeout_s = config.upload_timeout;
  ho.tls_cert = config.tls_cert;
  ho.cors_origins = config.cors_origins;
  ho.api_key = config.api_key;
  ho.shutting_down = &app.shutting_down;
  HttpServer server(router, &app.metrics, ho);
  // Bind before loading models: a port in use fails at once. Until they are
  // loaded, /api/health answers 503 "loading" (clients poll it, then infer).
  app.loading_models = !config.model_dir.empty();
  if (Status st = server.Start(); !st.ok()) {
    std::fprintf(stderr, "itkit_server: %s\n", st.message().c_str());
    return 1;
  }

  DeviceReport devices = QueryDevices();
  std::string url = std::string(config.tls_cert.empty() ? "http" : "https") + "://" +
                    (config.host.find(':') != std::string::npos ? "[" + config.host + "]" : config.host) + ":" +
                    std::to_string(config.port);
  LogInfo("============================================================");
  LogInfo("ITKIT Inference Server ", ITKIT_SERVER_VERSION, " (C++)");
  LogInfo("Host: ", config.host, " Port: ", config.port, " Debug: ", config.debug ? "True" : "False");
  LogInfo("CUDA Available: ", devices.cuda_available ? "True" : "False",
          devices.cuda_available ? "" : " (" + devices.cuda_unavailable_reason + ")");
  LogInfo("CUDA Devices: ", devices.cuda_available ? devices.gpus.size() : 0);
  for (const auto& g : devices.gpus) LogInfo("  GPU ", g.index, ": ", g.name);
  LogInfo("Auth: ", config.api_key.empty() ? "off" : "API key required", "  TLS: ", config.tls_cert.empty() ? "off" : "on");
  if (!config.config_file.empty()) LogInfo("Config file: ", config.config_file);
  LogInfo("Cache: ", config.cache_dir);
  LogInfo("============================================================");
  if (!config.model_dir.empty()) {
    LogInfo("loading models from ", config.model_dir);
    std::vector<std::string> errors = app.models->LoadDirectory(config.model_dir);
    LogInfo(app.models->size(), " model(s) loaded", errors.empty() ? "" : ", " + std::to_string(errors.size()) + " failed");
  }
  app.loading_models = false;
  LogInfo("listening on ", url);

  int sig = 0;
  sigwait(&signals, &sig);
  LogInfo("received ", sig == SIGINT ? "SIGINT" : "SIGTERM", ": shutting down (again to force)");
  app.shutting_down = true;
  std::thread([signals] {
    int again = 0;
    sigwait(&signals, &again);
    std::fprintf(stderr, "itkit_server: forced exit\n");
    std::_Exit(1);
  }).detach();
  app.jobs->Shutdown(std::chrono::milliseconds(static_cast<int64_t>(config.shutdown_grace * 1000)));
  server.Stop();
  app.models->UnloadAll();
  app.jobs.reset();
  app.models.reset();
  CleanTempDir(app.temp_dir);
  LogInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Errors are values throughout; this only guards against a bug escaping.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "itkit_server: fatal: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "itkit_server: fatal error\n");
  }
  return 1;
}
