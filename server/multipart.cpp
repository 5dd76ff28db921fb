#include "server/multipart.h"

#include <algorithm>
#include <cctype>
#include <optional>

namespace itkit::server {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 5987 ext-value: charset'lang'pct-encoded. Only the bytes matter to us.
std::string DecodeExtValue(std::string_view v) {
  size_t q1 = v.find('\'');
  if (q1 == std::string_view::npos) return std::string(v);
  size_t q2 = v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos) return std::string(v);
  return UrlDecode(v.substr(q2 + 1), false);
}

}  // namespace

HeaderValue ParseHeaderValue(std::string_view header) {
  HeaderValue out;
  size_t semi = header.find(';');
  out.value = Lower(Trim(header.substr(0, semi)));
  if (semi == std::string_view::npos) return out;
  std::string_view rest = header.substr(semi + 1);
  while (!rest.empty()) {
    rest = Trim(rest);
    size_t eq = rest.find('=');
    size_t sc = rest.find(';');
    if (eq == std::string_view::npos || (sc != std::string_view::npos && sc < eq)) {
      // A parameter without value: skip it.
      if (sc == std::string_view::npos) break;
      rest.remove_prefix(sc + 1);
      continue;
    }
    std::string key = Lower(Trim(rest.substr(0, eq)));
    rest.remove_prefix(eq + 1);
    rest = Trim(rest);
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        // Browsers do not escape backslashes in file names (C:\x.nii); only
        // treat \" and \\ as escapes.
        if (rest[i] == '\\' && i + 1 < rest.size() && (rest[i + 1] == '"' || rest[i + 1] == '\\')) ++i;
        value.push_back(rest[i]);
      }
      rest.remove_prefix(std::min(rest.size(), i + 1));
      size_t next = rest.find(';');
      rest.remove_prefix(next == std::string_view::npos ? rest.size() : next + 1);
    } else {
      size_t next = rest.find(';');
      value = std::string(Trim(rest.substr(0, next)));
      rest.remove_prefix(next == std::string_view::npos ? rest.size() : next + 1);
    }
    if (!key.empty()) out.params[key] = std::move(value);
  }
  return out;
}

ApiResult<std::string> MultipartBoundary(std::string_view content_type) {
  HeaderValue ct = ParseHeaderValue(content_type);
  if (ct.value != "multipart/form-data") {
    return MakeError(415, "expected Content-Type multipart/form-data, got '" +
                              (ct.value.empty() ? std::string("none") : ct.value) + "'");
  }
  auto it = ct.params.find("boundary");
  if (it == ct.params.end() || it->second.empty()) {
    return MakeError(400, "multipart/form-data without a boundary parameter");
  }
  const std::string& b = it->second;
  if (b.size() > 200 || b.find_first_of("\r\n") != std::string::npos) {
    return MakeError(400, "invalid multipart boundary");
  }
  return b;
}

MultipartParser::MultipartParser(std::string boundary, OnBegin on_begin, OnData on_data, OnEnd on_end)
    : MultipartParser(std::move(boundary), std::move(on_begin), std::move(on_data), std::move(on_end), Limits{}) {}

MultipartParser::MultipartParser(std::string boundary, OnBegin on_begin, OnData on_data, OnEnd on_end,
                                 Limits limits)
    : delimiter_("\r\n--" + boundary),
      on_begin_(std::move(on_begin)),
      on_data_(std::move(on_data)),
      on_end_(std::move(on_end)),
      limits_(limits) {
  // The first delimiter may start the body without a preceding CRLF; a virtual
  // CRLF lets one search handle both.
  buf_ = "\r\n";
}

ApiStatus MultipartParser::Fail(ApiError error) {
  state_ = State::kFailed;
  buf_.clear();
  buf_.shrink_to_fit();
  return error;
}

ApiStatus MultipartParser::Feed(std::string_view chunk) {
  if (state_ == State::kFailed) return MakeError(400, "malformed multipart body");
  if (state_ == State::kEpilogue) return ApiOk();  // trailing data is ignored
  buf_.append(chunk.data(), chunk.size());
  return Process();
}

ApiStatus MultipartParser::Finish() {
  if (state_ == State::kFailed) return MakeError(400, "malformed multipart body");
  if (state_ != State::kEpilogue) {
    return Fail(MakeError(400, parts_ == 0 ? "multipart body has no parts"
                                           : "multipart body ended before its closing boundary"));
  }
  return ApiOk();
}

ApiStatus MultipartParser::ParsePartHeaders(std::string_view block) {
  PartInfo info;
  bool has_disposition = false;
  while (!block.empty()) {
    size_t eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block.remove_prefix(eol == std::string_view::npos ? block.size() : eol + 2);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Fail(MakeError(400, "malformed multipart part header"));
    }
    std::string name = Lower(Trim(line.substr(0, colon)));
    std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-disposition") {
      HeaderValue cd = ParseHeaderValue(value);
      if (cd.value != "form-data") {
        return Fail(MakeError(400, "multipart part is not form-data (Content-Disposition: " + cd.value + ")"));
      }
      has_disposition = true;
      info.name = cd.params.count("name") ? cd.params["name"] : "";
      if (cd.params.count("filename*")) {
        info.filename = DecodeExtValue(cd.params["filename*"]);
        info.has_filename = true;
      } else if (cd.params.count("filename")) {
        info.filename = cd.params["filename"];
        info.has_filename = true;
      }
    } else if (name == "content-type") {
      info.content_type = Lower(value);
    }
  }
  if (!has_disposition) return Fail(MakeError(400, "multipart part without Content-Disposition"));
  if (info.name.empty()) return Fail(MakeError(400, "multipart part without a field name"));
  if (++parts_ > limits_.max_parts) {
    return Fail(MakeError(400, "too many multipart parts (limit " + std::to_string(limits_.max_parts) + ")"));
  }
  if (on_begin_) {
    ApiStatus st = on_begin_(info);
    if (!st.ok()) return Fail(st.error());
  }
  return ApiOk();
}

ApiStatus MultipartParser::Process() {
  size_t pos = 0;  // consumed prefix of buf_
  ApiStatus result = ApiOk();
  while (true) {
    std::string_view view(buf_);
    view.remove_prefix(pos);
    if (state_ == State::kPreamble || state_ == State::kBody) {
      // A delimiter counts only when followed by "--" or blanks + CRLF; a
      // boundary string inside the data followed by anything else is data.
      size_t scan = 0, at = std::string_view::npos;
      bool need_more = false;
      while (true) {
        at = view.find(delimiter_, scan);
        if (at == std::string_view::npos) break;
        std::string_view rest = view.substr(at + delimiter_.size());
        size_t i = 0;
        while (i < rest.size() && i < 256 && (rest[i] == ' ' || rest[i] == '\t')) ++i;
        bool closing = rest.size() >= 2 && rest[0] == '-' && rest[1] == '-';
        if (closing || (i + 2 <= rest.size() && rest[i] == '\r' && rest[i + 1] == '\n')) break;
        if (rest.size() < 2 || (i == rest.size() && i < 256) || (i + 1 == rest.size() && rest[i] == '\r')) {
          need_more = true;  // cannot tell yet
          break;
        }
        scan = at + 1;
      }
      size_t emit;
      if (at == std::string_view::npos) {
        // Keep what could be the start of a delimiter split across chunks.
        size_t keep_from = view.size() > delimiter_.size() - 1 ? view.size() - (delimiter_.size() - 1) : 0;
        emit = std::max(keep_from, std::min(scan, view.size()));
      } else {
        emit = at;
      }
      if (state_ == State::kBody && emit > 0 && on_data_) {
        ApiStatus st = on_data_(view.substr(0, emit));
        if (!st.ok()) return Fail(st.error());
      }
      if (at == std::string_view::npos || need_more) {
        pos += emit;
        break;
      }
      if (state_ == State::kBody && on_end_) {
        ApiStatus st = on_end_();
        if (!st.ok()) return Fail(st.error());
      }
      pos += at + delimiter_.size();
      state_ = State::kAfterDelimiter;
    } else if (state_ == State::kAfterDelimiter) {
      // "--" closes the body; otherwise optional blanks (RFC 2046 transport
      // padding) then CRLF start the next part's headers.
      if (view.size() < 2) break;
      if (view[0] == '-' && view[1] == '-') {
        state_ = State::kEpilogue;
        pos = buf_.size();
        break;
      }
      size_t i = 0;
      while (i < view.size() && i < 256 && (view[i] == ' ' || view[i] == '\t')) ++i;
      if (i >= 256) return Fail(MakeError(400, "malformed multipart delimiter line"));
      if (view.size() < i + 2) break;
      if (view[i] != '\r' || view[i + 1] != '\n') return Fail(MakeError(400, "malformed multipart delimiter line"));
      pos += i + 2;
      state_ = State::kHeaders;
    } else if (state_ == State::kHeaders) {
      size_t end;
      size_t skip;
      if (view.size() >= 2 && view[0] == '\r' && view[1] == '\n') {
        end = 0;  // no headers at all
        skip = 2;
      } else {
        end = view.find("\r\n\r\n");
        skip = 4;
      }
      if (end == std::string_view::npos) {
        if (view.size() > limits_.max_header_bytes) return Fail(MakeError(400, "multipart part headers too large"));
        break;
      }
      if (end > limits_.max_header_bytes) return Fail(MakeError(400, "multipart part headers too large"));
      ApiStatus st = ParsePartHeaders(view.substr(0, end));
      if (!st.ok()) return st;
      pos += end + skip;
      state_ = State::kBody;
    } else {
      pos = buf_.size();  // epilogue (or failed): discard
      break;
    }
  }
  buf_.erase(0, pos);
  return result;
}

namespace {

// A form without files (requests sends `data=` alone this way): the fields
// are read so that the caller can name what is missing, as Flask did.
ApiResult<FormData> ReadUrlEncodedForm(Request& req) {
  req.body_limit = std::min<int64_t>(req.body_limit, 1 << 20);
  auto body = req.ReadAll();
  if (!body.ok()) return body.error();
  FormData form;
  std::string_view q = body.value();
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    if (!pair.empty()) {
      form.fields[UrlDecode(pair.substr(0, eq), true)] =
          eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return form;
}

}  // namespace

ApiResult<FormData> ReadMultipartForm(Request& req, const FormOptions& options) {
  if (ParseHeaderValue(req.Header("Content-Type")).value == "application/x-www-form-urlencoded") {
    return ReadUrlEncodedForm(req);
  }
  auto boundary = MultipartBoundary(req.Header("Content-Type"));
  if (!boundary.ok()) return boundary.error();
  if (req.content_length > req.body_limit) {
    return MakeError(413, "upload of " + std::to_string(req.content_length) + " bytes exceeds the limit of " +
                              std::to_string(req.body_limit) + " bytes");
  }
  Clock::time_point t0 = Clock::now();
  FormData form;
  // Current part: either a file being written or a text field being collected.
  std::optional<TempWriter> writer;
  std::string field_name, field_value, file_name;
  bool is_file = false;

  auto on_begin = [&](const PartInfo& info) -> ApiStatus {
    field_name = info.name;
    field_value.clear();
    file_name = info.filename;
    is_file = std::find(options.file_fields.begin(), options.file_fields.end(), info.name) !=
              options.file_fields.end();
    if (is_file) {
      if (form.files.count(info.name)) return MakeError(400, "form field '" + info.name + "' given twice");
      auto w = TempWriter::Create(options.temp_dir, "upload", ".part");
      if (!w.ok()) return w.error();
      writer.emplace(std::move(w).value());
    } else if (info.has_filename) {
      is_file = true;  // an unexpected file: read and drop it
      writer.reset();
    }
    return ApiOk();
  };
  auto on_data = [&](std::string_view data) -> ApiStatus {
    if (is_file) return writer ? writer->Write(data.data(), data.size()) : ApiOk();
    if (field_value.size() + data.size() > options.max_field_bytes) {
      return MakeError(413, "form field '" + field_name + "' exceeds " + std::to_string(options.max_field_bytes) +
                                " bytes");
    }
    field_value.append(data);
    return ApiOk();
  };
  auto on_end = [&]() -> ApiStatus {
    if (is_file) {
      if (!writer) return ApiOk();
      int64_t size = writer->bytes();
      auto file = writer->Close();
      writer.reset();
      if (!file.ok()) return file.error();
      form.files[field_name] =
          UploadedFile{file_name, std::make_shared<TempFile>(std::move(file).value()), size};
    } else {
      form.fields[field_name] = std::move(field_value);
      field_value.clear();
    }
    return ApiOk();
  };

  MultipartParser parser(boundary.value(), on_begin, on_data, on_end);
  std::string buf(64 * 1024, '\0');
  while (true) {
    auto got = req.ReadSome(buf.data(), buf.size());
    if (!got.ok()) return got.error();
    if (got.value() == 0) break;
    ApiStatus st = parser.Feed(std::string_view(buf.data(), got.value()));
    if (!st.ok()) return st.error();
  }
  ApiStatus st = parser.Finish();
  if (!st.ok()) return st.error();
  form.upload_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return form;
}

}  // namespace itkit::server
