// A SegmentationModel stand-in for the server's unit tests: no network, no
// ITK; it "segments" by copying the input file, reporting progress per window
// and honouring the cancel flag, with knobs for delays and failures.
#pragma once

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "itkit/pipeline.h"

namespace itkit::server::testing {

class FakeModel : public pipeline::SegmentationModel {
 public:
  explicit FakeModel(std::string name = "fake", std::string backend = "cpu") {
    info_.name = std::move(name);
    info_.backend = std::move(backend);
    info_.num_classes = 3;
    info_.labels = {{"background", {0, 0, 0}}, {"a", {255, 0, 0}}, {"b", {0, 255, 0}}};
    info_.inference.patch_size = {16, 16, 16};
    info_.normalization.window_level = 0;
    info_.normalization.window_width = 2000;
  }
  ~FakeModel() override { alive().fetch_sub(1); }
  static std::atomic<int>& alive() {
    static std::atomic<int> n{0};
    return n;
  }

  const pipeline::ModelInfo& info() const override { return info_; }

  Result<pipeline::SegmentReport> Segment(const pipeline::SegmentRequest& request, const pipeline::ProgressFn& progress,
                                          const std::atomic<bool>* cancel) override {
    calls++;
    last_request = request;
    if (progress) progress({"read", 0, 0});
    for (int w = 0; w < windows; ++w) {
      if (cancel && cancel->load()) return Cancelled("cancelled");
      if (progress) progress({"windows", w, windows});
      std::this_thread::sleep_for(std::chrono::milliseconds(window_ms.load()));
    }
    if (cancel && cancel->load()) return Cancelled("cancelled");
    if (fail) return InvalidArgument("cannot read image");
    std::ifstream in(request.input_path, std::ios::binary);
    std::ofstream out(request.output_path, std::ios::binary);
    out << "LABELS:" << in.rdbuf();
    pipeline::SegmentReport report;
    report.windows = windows;
    report.device = info_.backend;
    report.accumulate_device = request.inference_override.accumulate_device.value_or(info_.backend);
    report.stage_seconds = {{"read", 0.001}, {"windows", 0.002}, {"write", 0.0005}};
    return report;
  }

  pipeline::ModelInfo info_;
  int windows = 4;
  std::atomic<int> window_ms{0};
  std::atomic<bool> fail{false};
  std::atomic<int> calls{0};
  pipeline::SegmentRequest last_request;

  static std::shared_ptr<FakeModel> Make(std::string name = "fake", std::string backend = "cpu") {
    alive().fetch_add(1);
    return std::make_shared<FakeModel>(std::move(name), std::move(backend));
  }
};

}  // namespace itkit::server::testing
