// CivetWeb adapter: one catch-all CivetWeb handler feeds every request through
// Dispatch() — request id, CORS, authentication, routing, error capture, the
// response, metrics and one log line. No exception leaves a CivetWeb callback.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "itkit/status.h"
#include "server/handler_threads.h"
#include "server/http.h"
#include "server/metrics.h"

struct mg_context;
struct mg_connection;

namespace itkit::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  int threads = 32;
  double io_timeout_s = 30;
  double upload_timeout_s = 600;
  std::string tls_cert;  // "" = plain HTTP
  std::vector<std::string> cors_origins;
  std::string api_key;
  const std::atomic<bool>* shutting_down = nullptr;
};

class HttpServer {
 public:
  HttpServer(const Router& router, Metrics* metrics, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; a one-line error (port in use, bad certificate).
  Status Start();
  // Stops accepting and waits for handlers to return.
  void Stop();

  // Routing, auth, CORS and error capture without a socket (used by tests).
  // `endpoint` receives the metrics label (route pattern or "other").
  Response Dispatch(Request& req, std::string* endpoint) const;

 private:
  static int OnRequest(mg_connection* conn, void* cbdata);
  static int OnLog(const mg_connection* conn, const char* message);
  static int OnHttpError(mg_connection* conn, int status, const char* message);
  void Serve(mg_connection* conn);
  int64_t Send(mg_connection* conn, const Request& req, Response& resp) const;
  void AddCors(const Request& req, Response* resp) const;

  // Ends uploads that outlive --upload-timeout. CivetWeb's mg_read keeps
  // waiting as long as bytes trickle in (each read within the I/O timeout), so
  // a deadline checked between reads is not enough: the watchdog shuts the
  // socket's read side, mg_read returns, and the request is answered 408.
  class UploadWatchdog {
   public:
    ~UploadWatchdog() { Stop(); }
    void Start();
    void Stop();
    uint64_t Watch(int fd, Clock::time_point deadline);
    void Unwatch(uint64_t token);

   private:
    struct Entry {
      int fd;
      Clock::time_point deadline;
    };
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<uint64_t, Entry> entries_;
    uint64_t next_ = 1;
    bool stop_ = false;
    std::thread thread_;
  };

  const Router& router_;
  Metrics* metrics_;
  HttpServerOptions options_;
  mg_context* ctx_ = nullptr;
  std::string id_prefix_;
  mutable std::atomic<uint64_t> next_id_{1};
  UploadWatchdog watchdog_;
  HandlerThreads handlers_;  // run Dispatch with full-size stacks (handler_threads.h)
};

// "host:port" for CivetWeb's listening_ports (IPv6 literals bracketed, 's'
// suffix for TLS).
std::string ListeningPort(const std::string& host, int port, bool tls);

}  // namespace itkit::server
