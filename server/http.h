// Transport-independent request/response types and the route table. Handlers
// see only these, so they can be unit-tested without a socket; http_server.cpp
// adapts them to CivetWeb.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/temp_files.h"

namespace itkit::server {

using Clock = std::chrono::steady_clock;

// Where request body bytes come from: CivetWeb's mg_read, or a string in tests.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // > 0: bytes read; 0: end of body; < 0: connection error or read timeout.
  virtual int64_t Read(char* buf, size_t n) = 0;
};

class StringBody : public BodySource {
 public:
  explicit StringBody(std::string data, size_t max_chunk = 65536)
      : data_(std::move(data)), max_chunk_(max_chunk) {}
  int64_t Read(char* buf, size_t n) override;

 private:
  std::string data_;
  size_t pos_ = 0;
  size_t max_chunk_;
};

struct Request {
  std::string method;
  std::string path;   // URL-decoded, without the query
  std::string query;  // raw, after '?'
  std::string request_id;
  std::string remote_addr;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t content_length = -1;  // -1: not given (chunked)
  std::map<std::string, std::string> params;  // from the route pattern
  Clock::time_point start = Clock::now();

  BodySource* body = nullptr;
  int64_t body_limit = 1 << 20;          // bytes; beyond: 413
  Clock::time_point body_deadline = Clock::time_point::max();  // whole upload
  const std::atomic<bool>* abort = nullptr;  // set on shutdown: stop reading
  int64_t body_read = 0;
  bool body_done = false;  // the whole body has been consumed
  std::function<void()> on_body_done;  // called once when body_done turns true

  // Case-insensitive; "" when absent.
  std::string Header(std::string_view name) const;
  // Reads up to n bytes of the body, enforcing the size limit, the deadline
  // and shutdown. Returns 0 at the end of the body.
  ApiResult<size_t> ReadSome(char* buf, size_t n);
  // The whole (small) body, e.g. JSON.
  ApiResult<std::string> ReadAll();
  // The value of a query parameter (URL-decoded), "" when absent.
  std::string QueryParam(std::string_view name) const;

 private:
  ApiResult<size_t> ReadSomeImpl(char* buf, size_t n);
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is this file (streamed), removed after sending if owned.
  std::string file_path;
  std::shared_ptr<TempFile> owned_file;
  // "name;dur=ms, ..." stage timings (Server-Timing), without the total.
  std::string server_timing;
  std::string log_model;  // for the request log line
  bool close_connection = false;

  static Response Json(int status, const nlohmann::json& body);
  static Response Error(const ApiError& error);
  static Response Error(int status, std::string message) { return Error(MakeError(status, std::move(message))); }
  // application/octet-stream with Content-Disposition: attachment; filename=...
  static Response Download(std::string path, const std::string& filename,
                           std::shared_ptr<TempFile> owned = nullptr);
  void AddHeader(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
};

using Handler = std::function<Response(Request&)>;

struct Route {
  std::string method;
  std::string pattern;        // "/api/jobs/{id}", "/static/{path*}"
  Handler handler;
  bool requires_auth = true;  // false only for /api/health and the status page
};

class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler, bool requires_auth = true);

  struct Match {
    const Route* route = nullptr;
    std::map<std::string, std::string> params;
    std::vector<std::string> allowed_methods;  // path known, method not: 405
  };
  Match Find(std::string_view method, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

// Splits "a/b/c" on '/', dropping empty segments.
std::vector<std::string> SplitPath(std::string_view path);
std::string UrlDecode(std::string_view in, bool plus_is_space);

// "upload;dur=1.2" fragment for Server-Timing (milliseconds).
std::string TimingEntry(std::string_view name, double seconds);

}  // namespace itkit::server
