// Streaming multipart/form-data (RFC 7578) parser. The body is fed in chunks as
// it arrives; file parts go straight to temporary files, so an upload is never
// held in memory (nor twice anywhere). Every malformed input is an ApiError.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/api_error.h"
#include "server/http.h"
#include "server/temp_files.h"

namespace itkit::server {

// "type/subtype; a=b; c=\"d\"": type lower-cased, parameter names lower-cased,
// quoted values unquoted.
struct HeaderValue {
  std::string value;
  std::map<std::string, std::string> params;
};
HeaderValue ParseHeaderValue(std::string_view header);

// The boundary of a multipart/form-data Content-Type; 415 for another type,
// 400 for a missing or invalid boundary.
ApiResult<std::string> MultipartBoundary(std::string_view content_type);

struct PartInfo {
  std::string name;
  std::string filename;
  bool has_filename = false;
  std::string content_type;
};

class MultipartParser {
 public:
  struct Limits {
    size_t max_header_bytes = 16 * 1024;  // per part
    size_t max_parts = 64;
  };
  using OnBegin = std::function<ApiStatus(const PartInfo&)>;
  using OnData = std::function<ApiStatus(std::string_view)>;
  using OnEnd = std::function<ApiStatus()>;

  MultipartParser(std::string boundary, OnBegin on_begin, OnData on_data, OnEnd on_end);
  MultipartParser(std::string boundary, OnBegin on_begin, OnData on_data, OnEnd on_end, Limits limits);

  ApiStatus Feed(std::string_view chunk);
  // The body ended: it must have reached the closing delimiter.
  ApiStatus Finish();
  bool done() const { return state_ == State::kEpilogue; }
  size_t parts() const { return parts_; }

 private:
  enum class State { kPreamble, kAfterDelimiter, kHeaders, kBody, kEpilogue, kFailed };
  ApiStatus Process();
  ApiStatus Fail(ApiError error);
  ApiStatus ParsePartHeaders(std::string_view block);

  std::string delimiter_;  // "\r\n--" + boundary
  OnBegin on_begin_;
  OnData on_data_;
  OnEnd on_end_;
  Limits limits_;
  State state_ = State::kPreamble;
  std::string buf_;
  size_t parts_ = 0;
};

struct UploadedFile {
  std::string filename;  // as the client named it (untrusted, informational)
  std::shared_ptr<TempFile> file;
  int64_t size = 0;
};

struct FormData {
  std::map<std::string, std::string> fields;
  std::map<std::string, UploadedFile> files;
  double upload_seconds = 0;
};

struct FormOptions {
  std::string temp_dir;
  std::vector<std::string> file_fields;  // parts stored as files (others: text fields)
  size_t max_field_bytes = 64 * 1024;
};

// Reads the whole multipart body of req (Content-Type checked here).
ApiResult<FormData> ReadMultipartForm(Request& req, const FormOptions& options);

}  // namespace itkit::server
