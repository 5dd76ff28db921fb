// libFuzzer target: arbitrary bytes → LoadOnnxModelFromBytes. Every input must end
// in a Model or an error Status: no crash, leak, UB, hang or huge allocation. A model
// that imports and has small declared inputs is also planned (passes, shape
// inference, constant folding, kernel creation, memory planning) through
// Session::StatsFor, when built with ITKIT_FUZZ_SESSION=ON and unless the
// environment sets ITKIT_FUZZ_NO_PLAN.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "itkit/log.h"
#include "itkit/onnx_importer.h"
#if ITKIT_FUZZ_SESSION
#include "itkit/session.h"
#endif

namespace {
#if ITKIT_FUZZ_SESSION

// Plans only when every declared input is small, so that legitimately large (but
// valid) models do not read as out-of-memory crashes. Symbolic dims count as 1.
constexpr int64_t kMaxPlannedInputElements = 1 << 12;

bool PlanEnabled() {
  static const bool enabled = std::getenv("ITKIT_FUZZ_NO_PLAN") == nullptr;
  return enabled;
}

void Plan(itkit::Model model) {
  std::vector<itkit::Shape> shapes;
  for (const itkit::ValueInfo& in : model.graph.inputs) {
    if (!in.has_shape) return;
    itkit::Shape s;
    for (const itkit::Dim& d : in.dims) s.push_back(d.is_static() ? d.value : 1);
    auto count = itkit::CheckedElementCount(s);
    if (!count.ok() || *count > kMaxPlannedInputElements) return;
    shapes.push_back(std::move(s));
  }
  for (const auto& [name, t] : model.graph.initializers)
    if (t.size() > kMaxPlannedInputElements * 16) return;
  itkit::SessionOptions options;
  options.threads = 1;
  auto session = itkit::Session::Create(std::move(model), options);
  if (!session.ok()) return;
  (void)(*session)->StatsFor(shapes);
}

#endif
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {
    itkit::SetLogSink([](itkit::LogLevel, std::string_view) {});
    return true;
  }();
  (void)quiet;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto model = itkit::LoadOnnxModelFromBytes(bytes, "");
  if (!model.ok()) {
    // Every error must carry a message (they are shown to users).
    if (model.status().message().empty()) std::abort();
    return 0;
  }
#if ITKIT_FUZZ_SESSION
  if (PlanEnabled()) Plan(std::move(model).value());
#endif
  return 0;
}
