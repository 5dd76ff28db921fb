#include "server/http.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace itkit::server {

namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Quoted-string escape for the filename in Content-Disposition; names we send
// are ours ("segmentation.nii.gz"), but stay safe if that ever changes.
std::string SafeFilename(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) continue;
    out.push_back(c);
  }
  return out.empty() ? "download" : out;
}

}  // namespace

int64_t StringBody::Read(char* buf, size_t n) {
  size_t left = data_.size() - pos_;
  size_t take = std::min({n, left, max_chunk_});
  std::memcpy(buf, data_.data() + pos_, take);
  pos_ += take;
  return static_cast<int64_t>(take);
}

std::string Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return "";
}

ApiResult<size_t> Request::ReadSome(char* buf, size_t n) {
  bool was_done = body_done;
  ApiResult<size_t> r = ReadSomeImpl(buf, n);
  if (body_done && !was_done && on_body_done) on_body_done();
  return r;
}

ApiResult<size_t> Request::ReadSomeImpl(char* buf, size_t n) {
  if (body_done || body == nullptr) return size_t{0};
  if (abort != nullptr && abort->load()) return MakeError(503, "server is shutting down", 5);
  if (Clock::now() > body_deadline) {
    return MakeError(408, "upload took too long (the server's upload time limit was reached)");
  }
  // Read at most one byte past the limit: enough to know it was exceeded.
  int64_t room = body_limit - body_read + 1;
  if (room <= 0) return MakeError(413, "request body exceeds the limit of " + std::to_string(body_limit) + " bytes");
  size_t want = std::min<size_t>(n, static_cast<size_t>(room));
  int64_t got = body->Read(buf, want);
  if (got <= 0 && Clock::now() > body_deadline) {
    // The server cut the read short at the deadline (upload watchdog).
    body_done = true;
    return MakeError(408, "upload took too long (the server's upload time limit was reached)");
  }
  if (got < 0) return MakeError(408, "connection error or timeout while reading the request body");
  if (got == 0) {
    body_done = true;
    if (content_length >= 0 && body_read < content_length) {
      // CivetWeb reports a closed connection and a read timeout alike.
      return MakeError(408, "request body incomplete: the connection closed or timed out after " +
                                std::to_string(body_read) + " of " + std::to_string(content_length) + " bytes");
    }
    return size_t{0};
  }
  body_read += got;
  if (body_read > body_limit) {
    return MakeError(413, "request body exceeds the limit of " + std::to_string(body_limit) + " bytes");
  }
  if (content_length >= 0 && body_read >= content_length) body_done = true;
  return static_cast<size_t>(got);
}

ApiResult<std::string> Request::ReadAll() {
  if (content_length > body_limit) {
    return MakeError(413, "request body exceeds the limit of " + std::to_string(body_limit) + " bytes");
  }
  std::string out;
  char buf[16384];
  while (true) {
    auto got = ReadSome(buf, sizeof(buf));
    if (!got.ok()) return got.error();
    if (got.value() == 0) break;
    out.append(buf, got.value());
  }
  return out;
}

std::string Request::QueryParam(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = UrlDecode(pair.substr(0, eq), true);
    if (key == name) return eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1), true);
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return "";
}

Response Response::Json(int status, const nlohmann::json& body) {
  Response r;
  r.status = status;
  // Replace invalid UTF-8 (e.g. from a file name) instead of throwing.
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.body.push_back('\n');
  return r;
}

Response Response::Error(const ApiError& error) {
  Response r = Json(error.http_status, nlohmann::json{{"error", error.message}});
  if (error.retry_after_s > 0) r.AddHeader("Retry-After", std::to_string(error.retry_after_s));
  if (error.http_status == 401) r.AddHeader("WWW-Authenticate", "Bearer realm=\"itkit\"");
  return r;
}

Response Response::Download(std::string path, const std::string& filename, std::shared_ptr<TempFile> owned) {
  Response r;
  r.content_type = "application/octet-stream";
  r.file_path = std::move(path);
  r.owned_file = std::move(owned);
  r.AddHeader("Content-Disposition", "attachment; filename=\"" + SafeFilename(filename) + "\"");
  return r;
}

void Router::Add(std::string method, std::string pattern, Handler handler, bool requires_auth) {
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(handler), requires_auth});
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  // Among the patterns matching the path, only the most literal ones count:
  // /api/models/upload is that route, not /api/models/{name}.
  Match match;
  int best = -1;
  std::vector<std::string> segs = SplitPath(path);
  for (const Route& route : routes_) {
    std::vector<std::string> pat = SplitPath(route.pattern);
    std::map<std::string, std::string> params;
    bool ok = true;
    bool rest_param = false;
    int literals = 0;
    for (size_t i = 0; i < pat.size() && ok; ++i) {
      const std::string& p = pat[i];
      bool is_param = p.size() > 2 && p.front() == '{' && p.back() == '}';
      if (is_param && p[p.size() - 2] == '*') {
        // Rest-of-path parameter (static files): joins the remaining segments.
        std::string rest;
        for (size_t k = i; k < segs.size(); ++k) rest += (rest.empty() ? "" : "/") + segs[k];
        ok = !rest.empty();
        params[p.substr(1, p.size() - 3)] = rest;
        rest_param = true;
        break;
      }
      if (i >= segs.size()) {
        ok = false;
      } else if (is_param) {
        params[p.substr(1, p.size() - 2)] = segs[i];
      } else if (p != segs[i]) {
        ok = false;
      } else {
        ++literals;
      }
    }
    if (!ok || (!rest_param && segs.size() != pat.size()) || literals < best) continue;
    if (literals > best) {
      best = literals;
      match = Match{};
    }
    if (route.method == method) {
      if (match.route == nullptr) {
        match.route = &route;
        match.params = std::move(params);
      }
    } else if (std::find(match.allowed_methods.begin(), match.allowed_methods.end(), route.method) ==
               match.allowed_methods.end()) {
      match.allowed_methods.push_back(route.method);
    }
  }
  if (match.route != nullptr) match.allowed_methods.clear();
  return match;
}

std::string UrlDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::string TimingEntry(std::string_view name, double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), ";dur=%.1f", seconds * 1000.0);
  return std::string(name) + buf;
}

}  // namespace itkit::server
