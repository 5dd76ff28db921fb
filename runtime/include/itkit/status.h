// Errors are values: every fallible call returns Status or Result<T>, never throws
// or aborts, so a server embedding the runtime survives any bad model or input.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace itkit {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // malformed model/input/request
  kNotFound,
  kUnsupported,      // valid but not implemented by us (op, dtype, attribute value)
  kOutOfMemory,
  kResourceExhausted,
  kIoError,
  kCancelled,
  kUnavailable,      // e.g. no CUDA device
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "context: message" — used to name the node/file/field an error came from.
  Status WithContext(std::string_view context) const {
    if (ok()) return *this;
    return Status(code_, std::string(context) + ": " + message_);
  }
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
Status InvalidArgument(const Args&... args) { return Status(StatusCode::kInvalidArgument, StrCat(args...)); }
template <typename... Args>
Status Unsupported(const Args&... args) { return Status(StatusCode::kUnsupported, StrCat(args...)); }
template <typename... Args>
Status NotFound(const Args&... args) { return Status(StatusCode::kNotFound, StrCat(args...)); }
template <typename... Args>
Status Internal(const Args&... args) { return Status(StatusCode::kInternal, StrCat(args...)); }
template <typename... Args>
Status IoError(const Args&... args) { return Status(StatusCode::kIoError, StrCat(args...)); }
template <typename... Args>
Status OutOfMemory(const Args&... args) { return Status(StatusCode::kOutOfMemory, StrCat(args...)); }
template <typename... Args>
Status ResourceExhausted(const Args&... args) { return Status(StatusCode::kResourceExhausted, StrCat(args...)); }
template <typename... Args>
Status Unavailable(const Args&... args) { return Status(StatusCode::kUnavailable, StrCat(args...)); }
template <typename... Args>
Status Cancelled(const Args&... args) { return Status(StatusCode::kCancelled, StrCat(args...)); }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result built from an OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace itkit

#define ITKIT_CONCAT_INNER(a, b) a##b
#define ITKIT_CONCAT(a, b) ITKIT_CONCAT_INNER(a, b)

#define ITKIT_RETURN_IF_ERROR(expr)              \
  do {                                           \
    ::itkit::Status itkit_status_ = (expr);      \
    if (!itkit_status_.ok()) return itkit_status_; \
  } while (0)

#define ITKIT_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// Expands to several statements: inside an if/else, wrap it in braces.
#define ITKIT_ASSIGN_OR_RETURN(lhs, expr) \
  ITKIT_ASSIGN_OR_RETURN_IMPL(ITKIT_CONCAT(itkit_result_, __LINE__), lhs, expr)
