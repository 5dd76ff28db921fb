// HTTP-level errors as values. itkit::Status has no notion of 401/403/413/...,
// so the server layer carries the HTTP status with the message; every error the
// client sees is {"error": message} with this status.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "itkit/status.h"

namespace itkit::server {

struct ApiError {
  int http_status = 500;
  std::string message;
  int retry_after_s = 0;  // > 0: sent as Retry-After (503)
};

inline ApiError MakeError(int http_status, std::string message, int retry_after_s = 0) {
  return ApiError{http_status, std::move(message), retry_after_s};
}

template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}       // NOLINT: implicit by design
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const ApiError& error() const { return std::get<ApiError>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, ApiError> v_;
};

struct Unit {};
using ApiStatus = ApiResult<Unit>;
inline ApiStatus ApiOk() { return Unit{}; }

// Maps a runtime/pipeline status to the HTTP status a client should see. Bad
// input (unreadable image, unsupported model) is the client's problem (400);
// exhaustion is transient (503); anything else is ours (500).
inline int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnsupported:
    case StatusCode::kIoError: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kOutOfMemory:
    case StatusCode::kResourceExhausted:
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kCancelled: return 409;
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

inline ApiError FromStatus(const Status& status, const std::string& context = "") {
  std::string message = context.empty() ? status.message() : context + ": " + status.message();
  int code = HttpStatusFor(status.code());
  return ApiError{code, std::move(message), code == 503 ? 5 : 0};
}

}  // namespace itkit::server
