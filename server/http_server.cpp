#include "server/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <civetweb.h>

#include "itkit/log.h"
#include "server/auth.h"

namespace itkit::server {

namespace {

class MgBody : public BodySource {
 public:
  explicit MgBody(mg_connection* conn) : conn_(conn) {}
  int64_t Read(char* buf, size_t n) override {
    int got = mg_read(conn_, buf, std::min<size_t>(n, 1 << 20));
    return got;
  }

 private:
  mg_connection* conn_;
};

std::string FormatMs(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", seconds * 1000.0);
  return buf;
}

// Request/response headers are copied from the client; keep control bytes out
// of our log lines.
std::string LogSafe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 300)) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  return out;
}

// CivetWeb does not expose a connection's socket; find it among our file
// descriptors by its address pair. -1 when not found (no watchdog then).
int FindConnectionSocket(const mg_request_info* info) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    struct stat st;
    if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof(peer), ll = sizeof(local);
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0 ||
        ::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) {
      continue;
    }
    char addr[INET6_ADDRSTRLEN] = {0};
    int peer_port = 0, local_port = 0;
    if (peer.ss_family == AF_INET) {
      auto* p4 = reinterpret_cast<sockaddr_in*>(&peer);
      ::inet_ntop(AF_INET, &p4->sin_addr, addr, sizeof(addr));
      peer_port = ntohs(p4->sin_port);
      local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      auto* p6 = reinterpret_cast<sockaddr_in6*>(&peer);
      ::inet_ntop(AF_INET6, &p6->sin6_addr, addr, sizeof(addr));
      peer_port = ntohs(p6->sin6_port);
      local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
    } else {
      continue;
    }
    if (peer_port == info->remote_port && local_port == info->server_port &&
        std::strcmp(addr, info->remote_addr) == 0) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

}  // namespace

void HttpServer::UploadWatchdog::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      Clock::time_point now = Clock::now();
      for (auto it = entries_.begin(); it != entries_.end();) {
        if (now > it->second.deadline) {
          // Under the lock: Unwatch (before the connection closes) waits for
          // this, so the descriptor is still the connection's.
          ::shutdown(it->second.fd, SHUT_RD);
          it = entries_.erase(it);
        } else {
          ++it;
        }
      }
    }
  });
}

void HttpServer::UploadWatchdog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t HttpServer::UploadWatchdog::Watch(int fd, Clock::time_point deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t token = next_++;
  entries_[token] = Entry{fd, deadline};
  return token;
}

void HttpServer::UploadWatchdog::Unwatch(uint64_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(token);
}

std::string ListeningPort(const std::string& host, int port, bool tls) {
  std::string h = host == "localhost" ? "127.0.0.1" : host;
  if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";
  return h + ":" + std::to_string(port) + (tls ? "s" : "");
}

HttpServer::HttpServer(const Router& router, Metrics* metrics, HttpServerOptions options)
    : router_(router), metrics_(metrics), options_(std::move(options)), id_prefix_(RandomHex(3)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  bool tls = !options_.tls_cert.empty();
  if (tls && mg_check_feature(MG_FEATURES_TLS) == 0) {
    return Unsupported("this CivetWeb build has no TLS support; cannot use --tls-cert");
  }
  std::string ports = ListeningPort(options_.host, options_.port, tls);
  std::string threads = std::to_string(options_.threads);
  std::string io_ms = std::to_string(static_cast<int64_t>(options_.io_timeout_s * 1000));
  // One handler thread per CivetWeb worker: a worker waits for its handler, so
  // none ever queues.
  if (!handlers_.Start(options_.threads)) {
    return Unavailable("cannot start ", options_.threads, " request handler threads (--http-threads)");
  }
  std::vector<const char*> opts = {
      "listening_ports", ports.c_str(),
      "num_threads", threads.c_str(),
      "request_timeout_ms", io_ms.c_str(),
      "enable_keep_alive", "yes",
      "keep_alive_timeout_ms", "5000",
      "linger_timeout_ms", "1000",
      "tcp_nodelay", "1",
      // CivetWeb would answer CORS preflights itself; ours know the
      // configured origins.
      "access_control_allow_origin", "",
  };
  if (tls) {
    opts.insert(opts.end(), {"ssl_certificate", options_.tls_cert.c_str(), "ssl_protocol_version", "4"});
  }
  opts.push_back(nullptr);

  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &HttpServer::OnLog;
  callbacks.http_error = &HttpServer::OnHttpError;
  mg_init_data init;
  std::memset(&init, 0, sizeof(init));
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = opts.data();
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error;
  std::memset(&error, 0, sizeof(error));
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  ctx_ = mg_start2(&init, &error);
  if (ctx_ == nullptr) {
    handlers_.Stop();
    std::string why = error_text[0] ? error_text : "unknown error";
    return Unavailable("cannot listen on ", ports, ": ", why);
  }
  // "**" matches every URI: routing is ours (route table in http.h).
  mg_set_request_handler(ctx_, "**", &HttpServer::OnRequest, this);
  watchdog_.Start();
  return Status::Ok();
}

void HttpServer::Stop() {
  if (ctx_ != nullptr) {
    mg_stop(ctx_);
    ctx_ = nullptr;
  }
  watchdog_.Stop();
  handlers_.Stop();
}

int HttpServer::OnLog(const mg_connection*, const char* message) {
  // CivetWeb's own diagnostics (TLS handshakes, socket errors) go to our log.
  try {
    LogDebug("civetweb: ", message ? message : "");
  } catch (...) {
  }
  return 1;
}

int HttpServer::OnHttpError(mg_connection* conn, int status, const char* message) {
  // Requests CivetWeb rejects before routing (malformed headers, methods it
  // does not know such as TRACE) get our JSON error format too.
  try {
    auto* self = static_cast<HttpServer*>(mg_get_user_data(mg_get_context(conn)));
    const mg_request_info* info = mg_get_request_info(conn);
    std::string method = info && info->request_method ? info->request_method : "";
    std::string path = info && info->local_uri ? info->local_uri : "";
    if (path.empty() && info && info->request_uri && info->request_uri[0] == '/') {
      // Rejected methods (TRACE) stop before CivetWeb fills local_uri.
      std::string raw = info->request_uri;
      path = UrlDecode(raw.substr(0, raw.find('?')), false);
    }
    LogDebug("civetweb error ", status, " method='", LogSafe(method), "' path='", LogSafe(path), "' uri='",
             LogSafe(info && info->request_uri ? info->request_uri : ""), "'");
    std::string allow;
    if (self != nullptr && status == 400 && !method.empty() && !path.empty()) {
      Router::Match m = self->router_.Find(method, path);
      if (m.route == nullptr) {
        for (const auto& a : m.allowed_methods) allow += (allow.empty() ? "" : ", ") + a;
      }
    }
    Response r = allow.empty()
                     ? Response::Error(status, message && *message ? std::string(message) : "bad request")
                     : Response::Error(405, "method " + method + " is not allowed on " + path + " (allowed: " + allow + ")");
    if (!allow.empty()) r.AddHeader("Allow", allow);
    mg_disable_connection_keep_alive(conn);
    if (mg_response_header_start(conn, r.status) != 0) return 1;  // too late: CivetWeb's own page
    mg_response_header_add(conn, "Content-Type", "application/json", -1);
    std::string len = std::to_string(r.body.size());
    mg_response_header_add(conn, "Content-Length", len.c_str(), -1);
    for (const auto& [k, v] : r.headers) mg_response_header_add(conn, k.c_str(), v.c_str(), -1);
    mg_response_header_send(conn);
    mg_write(conn, r.body.data(), r.body.size());
    if (self && self->metrics_) self->metrics_->ObserveRequest("other", method.empty() ? "?" : method, r.status, 0, 0, 0);
    return 0;
  } catch (...) {
    return 1;
  }
}

int HttpServer::OnRequest(mg_connection* conn, void* cbdata) {
  auto* self = static_cast<HttpServer*>(cbdata);
  try {
    self->Serve(conn);
  } catch (...) {
    // Serve handles its own errors; reaching here means even the error
    // response failed (e.g. out of memory). Drop the connection quietly.
    mg_disable_connection_keep_alive(conn);
  }
  return 1;  // handled; CivetWeb must not try to serve files
}

void HttpServer::AddCors(const Request& req, Response* resp) const {
  if (options_.cors_origins.empty()) return;
  std::string origin = req.Header("Origin");
  bool any = std::find(options_.cors_origins.begin(), options_.cors_origins.end(), "*") != options_.cors_origins.end();
  if (any) {
    resp->AddHeader("Access-Control-Allow-Origin", "*");
  } else if (!origin.empty() &&
             std::find(options_.cors_origins.begin(), options_.cors_origins.end(), origin) != options_.cors_origins.end()) {
    resp->AddHeader("Access-Control-Allow-Origin", origin);
    resp->AddHeader("Vary", "Origin");
  } else {
    return;
  }
  resp->AddHeader("Access-Control-Expose-Headers", "Content-Disposition, Server-Timing, X-Request-Id, Retry-After");
}

Response HttpServer::Dispatch(Request& req, std::string* endpoint) const {
  *endpoint = "other";
  Router::Match match = router_.Find(req.method, req.path);
  if (req.method == "OPTIONS") {
    // CORS preflight: answered without authentication (browsers never send
    // credentials here).
    const std::vector<std::string>& methods = match.allowed_methods;
    if (methods.empty()) return Response::Error(404, "not found: " + req.path);
    std::string allow = "OPTIONS";
    for (const auto& m : methods) allow += ", " + m;
    Response r;
    r.status = 204;
    r.content_type.clear();
    r.AddHeader("Allow", allow);
    if (!options_.cors_origins.empty()) {
      r.AddHeader("Access-Control-Allow-Methods", allow);
      r.AddHeader("Access-Control-Allow-Headers", "Authorization, Content-Type");
      r.AddHeader("Access-Control-Max-Age", "600");
    }
    return r;
  }
  bool public_route = match.route != nullptr && !match.route->requires_auth;
  if (!public_route) {
    ApiStatus auth = CheckBearer(req.Header("Authorization"), options_.api_key);
    if (!auth.ok()) return Response::Error(auth.error());
  }
  if (match.route == nullptr) {
    if (!match.allowed_methods.empty()) {
      std::string allow;
      for (const auto& m : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + m;
      Response r = Response::Error(405, "method " + req.method + " is not allowed on " + req.path + " (allowed: " +
                                            allow + ")");
      r.AddHeader("Allow", allow);
      return r;
    }
    return Response::Error(404, "not found: " + req.path);
  }
  *endpoint = match.route->pattern;
  req.params = std::move(match.params);
  try {
    return match.route->handler(req);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "request " + req.request_id + ": unhandled exception: " + e.what());
    return Response::Error(500, std::string("internal error: ") + e.what());
  } catch (...) {
    Log(LogLevel::kError, "request " + req.request_id + ": unhandled exception");
    return Response::Error(500, "internal error");
  }
}

int64_t HttpServer::Send(mg_connection* conn, const Request& req, Response& resp) const {
  int64_t length = static_cast<int64_t>(resp.body.size());
  int fd = -1;
  if (!resp.file_path.empty()) {
    fd = ::open(resp.file_path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      if (fd >= 0) ::close(fd);
      fd = -1;
      Response err = Response::Error(500, "result file vanished before it could be sent");
      resp.status = err.status;
      resp.body = err.body;
      resp.content_type = err.content_type;
      resp.headers.clear();
      length = static_cast<int64_t>(resp.body.size());
    } else {
      length = st.st_size;
    }
  }
  if (!req.body_done) {
    // The body was not read to its end (an early error): the connection
    // cannot carry another request.
    resp.close_connection = true;
  }
  if (resp.close_connection) mg_disable_connection_keep_alive(conn);

  double elapsed = std::chrono::duration<double>(Clock::now() - req.start).count();
  std::string timing = resp.server_timing.empty() ? "" : resp.server_timing + ", ";
  timing += TimingEntry("total", elapsed);

  mg_response_header_start(conn, resp.status);
  if (!resp.content_type.empty()) mg_response_header_add(conn, "Content-Type", resp.content_type.c_str(), -1);
  std::string len = std::to_string(length);
  mg_response_header_add(conn, "Content-Length", len.c_str(), -1);
  mg_response_header_add(conn, "X-Request-Id", req.request_id.c_str(), -1);
  mg_response_header_add(conn, "Server-Timing", timing.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
  for (const auto& [k, v] : resp.headers) mg_response_header_add(conn, k.c_str(), v.c_str(), -1);
  mg_response_header_send(conn);

  int64_t sent = 0;
  if (req.method == "HEAD") {
    // no body
  } else if (fd >= 0) {
    std::vector<char> buf(256 * 1024);
    while (true) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      if (mg_write(conn, buf.data(), static_cast<size_t>(n)) <= 0) break;  // client went away
      sent += n;
    }
  } else if (!resp.body.empty()) {
    if (mg_write(conn, resp.body.data(), resp.body.size()) > 0) sent = static_cast<int64_t>(resp.body.size());
  }
  if (fd >= 0) ::close(fd);
  return sent;
}

void HttpServer::Serve(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  Request req;
  req.start = Clock::now();
  req.request_id = id_prefix_ + "-" + std::to_string(next_id_.fetch_add(1));
  req.method = info->request_method ? info->request_method : "";
  req.path = info->local_uri ? info->local_uri : "/";
  req.query = info->query_string ? info->query_string : "";
  req.remote_addr = info->remote_addr;
  req.content_length = info->content_length;
  for (int i = 0; i < info->num_headers; ++i) {
    req.headers.emplace_back(info->http_headers[i].name ? info->http_headers[i].name : "",
                             info->http_headers[i].value ? info->http_headers[i].value : "");
  }
  // CivetWeb reports -1 both for chunked bodies and for requests without a
  // body; only the former has one.
  std::string te = req.Header("Transfer-Encoding");
  for (auto& c : te) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool chunked = te.find("chunked") != std::string::npos;
  if (!chunked && req.content_length < 0) req.content_length = 0;
  MgBody body(conn);
  req.body = &body;
  req.body_done = req.content_length == 0;
  req.body_deadline = req.start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options_.upload_timeout_s));
  req.abort = options_.shutting_down;

  // Requests with a body are watched for the upload deadline.
  uint64_t watch = 0;
  if (!req.body_done) {
    int fd = FindConnectionSocket(info);
    if (fd >= 0) {
      watch = watchdog_.Watch(fd, req.body_deadline);
      // Once the body is in, a long inference must not trip the watchdog.
      req.on_body_done = [this, watch] { watchdog_.Unwatch(watch); };
    }
  }
  std::string endpoint;
  Response resp;
  resp.status = 500;  // stays if even the error answer below cannot be built
  handlers_.Run([&] {
    try {
      resp = Dispatch(req, &endpoint);
    } catch (...) {
      resp = Response::Error(500, "internal error");
    }
  });
  if (watch != 0) watchdog_.Unwatch(watch);
  AddCors(req, &resp);
  int64_t sent = Send(conn, req, resp);
  resp.owned_file.reset();  // removes a temporary result now that it is sent

  double seconds = std::chrono::duration<double>(Clock::now() - req.start).count();
  if (metrics_) metrics_->ObserveRequest(endpoint, req.method, resp.status, seconds, req.body_read, sent);
  std::string line = "req=" + req.request_id + " " + LogSafe(req.method) + " " + LogSafe(req.path) + " " +
                     std::to_string(resp.status) + " in=" + std::to_string(req.body_read) +
                     " out=" + std::to_string(sent) + " " + FormatMs(seconds) + "ms";
  if (!resp.log_model.empty()) line += " model=" + LogSafe(resp.log_model);
  line += " client=" + LogSafe(req.remote_addr);
  Log(resp.status >= 500 ? LogLevel::kWarning : LogLevel::kInfo, line);
}

}  // namespace itkit::server
