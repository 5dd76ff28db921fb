// libFuzzer target for everything the server parses from a client before any
// model runs: multipart bodies (fed in fuzzer-chosen chunk sizes), the form
// reader that streams parts to temporary files, header values, JSON load
// requests and inference form fields. Byte 0 picks the parser, byte 1 the
// chunking. The same function replays server/fuzz/{corpus,regressions} in the
// unit tests (itkit_server_tests), so crash inputs stay regression tests.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

#include "server/http.h"
#include "server/multipart.h"
#include "server/params.h"

namespace {

using namespace itkit::server;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void FuzzParser(std::string_view in, size_t chunk) {
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) return;
  auto boundary = MultipartBoundary(in.substr(0, nl));
  if (!boundary.ok()) return;
  std::string_view body = in.substr(nl + 1);
  size_t delivered = 0;
  bool in_part = false;
  MultipartParser parser(
      boundary.value(),
      [&](const PartInfo& info) {
        Check(!in_part && !info.name.empty());
        in_part = true;
        return ApiOk();
      },
      [&](std::string_view d) {
        Check(in_part);
        delivered += d.size();
        return ApiOk();
      },
      [&] {
        Check(in_part);
        in_part = false;
        return ApiOk();
      });
  for (size_t i = 0; i < body.size(); i += chunk) {
    if (!parser.Feed(body.substr(i, chunk)).ok()) return;
  }
  Check(delivered <= body.size());
  ApiStatus done = parser.Finish();
  Check(!done.ok() || parser.done());
}

const std::string& TempDir() {
  static const std::string dir = [] {
    std::string d = "/tmp/itkit-fuzz-" + std::to_string(::getpid());
    (void)MakeDirs(d).ok();
    std::atexit([] { RemoveTree("/tmp/itkit-fuzz-" + std::to_string(::getpid())); });
    return d;
  }();
  return dir;
}

void FuzzForm(std::string_view in, size_t chunk) {
  size_t nl = in.find('\n');
  if (nl == std::string_view::npos) return;
  StringBody body(std::string(in.substr(nl + 1)), chunk);
  Request req;
  req.method = "POST";
  req.headers = {{"Content-Type", std::string(in.substr(0, nl))}};
  req.content_length = (chunk & 1) ? -1 : static_cast<int64_t>(in.size() - nl - 1);
  req.body = &body;
  req.body_limit = 1 << 16;
  FormOptions fo;
  fo.temp_dir = TempDir();
  fo.file_fields = {"image", "model"};
  fo.max_field_bytes = 256;
  auto form = ReadMultipartForm(req, fo);
  if (form.ok()) {
    for (auto& [name, f] : form->files) Check(f.file && f.size >= 0 && f.size <= req.body_read);
    auto p = ParseInferParams(form->fields);
    (void)p;
  }
}

void FuzzFields(std::string_view in) {
  std::map<std::string, std::string> fields;
  while (!in.empty()) {
    size_t amp = in.find('&');
    std::string_view kv = in.substr(0, amp);
    size_t eq = kv.find('=');
    fields[std::string(kv.substr(0, eq))] = eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    in.remove_prefix(amp + 1);
  }
  auto p = ParseInferParams(fields);
  if (p.ok() && p->overrides.patch_size) Check(p->overrides.patch_size->size() == 3);
  for (const auto& [k, v] : fields) {
    auto t = ParseTriple(v, k);
    if (t.ok()) {
      Check(t->size() == 3);
      for (int64_t x : t.value()) Check(x >= 1 && x <= 4096);
    }
    HeaderValue h = ParseHeaderValue(v);
    (void)h;
    (void)UrlDecode(v, true);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t chunk = (data[1] & 0x80) ? 4096 + data[1] : 1 + (data[1] % 64);
  switch (data[0] % 4) {
    case 0: FuzzParser(in, chunk); break;
    case 1: FuzzForm(in, chunk); break;
    case 2: {
      auto r = ParseLoadRequest(in);
      if (r.ok()) Check(r->name.empty() || ValidModelName(r->name));
      break;
    }
    default: FuzzFields(in); break;
  }
  return 0;
}
