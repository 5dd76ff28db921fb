// itkit_infer: batch segmentation from the command line. One model load, then every
// input file in turn; a progress bar on a terminal, plain log lines otherwise; exit
// status 1 when any file failed (each failure named), 2 on a usage error.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "cli_args.h"
#include "itkit/log.h"
#include "itkit/pipeline.h"

namespace fs = std::filesystem;
using itkit::cli::InferArgs;

namespace {

const char* kImageExtensions[] = {".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"};

// ".nii.gz" for "a.nii.gz", "" when not an image name.
std::string ImageExtension(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.size() > 9 && lower.compare(lower.size() - 9, 9, ".seg.nrrd") == 0) return ".seg.nrrd";
  for (const char* ext : kImageExtensions) {
    const std::string e = ext;
    if (lower.size() > e.size() && lower.compare(lower.size() - e.size(), e.size(), e) == 0) return e;
  }
  return "";
}

std::string Stem(const std::string& name) {
  const std::string ext = ImageExtension(name);
  return name.substr(0, name.size() - ext.size());
}

struct Job {
  std::string input, output, stats;
};

// Single file / DICOM folder → one job; a folder of images → one job per image (and
// per sub-folder, read as a DICOM series).
itkit::Result<std::vector<Job>> PlanJobs(const InferArgs& a) {
  std::vector<Job> jobs;
  std::error_code ec;
  if (!fs::exists(a.input, ec)) return itkit::NotFound(a.input, ": no such file or folder");
  std::vector<fs::path> images, series;
  if (fs::is_directory(a.input, ec)) {
    for (const auto& e : fs::directory_iterator(a.input, ec)) {
      if (e.is_regular_file() && !ImageExtension(e.path().filename().string()).empty()) images.push_back(e.path());
      if (e.is_directory()) series.push_back(e.path());
    }
  }
  if (images.empty() && (!fs::is_directory(a.input, ec) || series.empty())) {
    // One input: a file, or a folder holding one DICOM series.
    if (fs::is_directory(a.output, ec) || (!a.output.empty() && a.output.back() == '/'))
      return itkit::InvalidArgument(a.output, ": one input needs an output file name, not a folder");
    jobs.push_back(Job{a.input, a.output, a.stats});
    return jobs;
  }
  std::sort(images.begin(), images.end());
  std::sort(series.begin(), series.end());
  if (!ImageExtension(a.output).empty())
    return itkit::InvalidArgument(a.output, ": a folder input needs an output folder");
  fs::create_directories(a.output, ec);
  if (ec) return itkit::IoError(a.output, ": ", ec.message());
  if (!a.stats.empty()) {
    fs::create_directories(a.stats, ec);
    if (ec) return itkit::IoError(a.stats, ": ", ec.message());
  }
  auto add = [&](const fs::path& in, const std::string& stem, const std::string& ext) {
    Job j;
    j.input = in.string();
    j.output = (fs::path(a.output) / (stem + (a.format.empty() ? ext : a.format))).string();
    if (!a.stats.empty()) j.stats = (fs::path(a.stats) / (stem + ".json")).string();
    jobs.push_back(j);
  };
  for (const auto& p : images) {
    const std::string name = p.filename().string();
    std::string ext = ImageExtension(name);
    if (ext == ".nhdr" || ext == ".mhd") ext = ext == ".nhdr" ? ".nrrd" : ".mha";  // one output file
    add(p, Stem(name), ext);
  }
  for (const auto& p : series) add(p, p.filename().string(), ".nii.gz");
  return jobs;
}

// Progress: an in-place bar on a terminal, a line per stage and per 10 % otherwise.
class ProgressView {
 public:
  ProgressView(bool tty, bool quiet) : tty_(tty), quiet_(quiet) {}
  void Start(size_t index, size_t count, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    prefix_ = "[" + std::to_string(index + 1) + "/" + std::to_string(count) + "] " + name;
    last_decile_ = -1;
    start_ = std::chrono::steady_clock::now();
    if (!quiet_ && !tty_) std::fprintf(stderr, "%s: start\n", prefix_.c_str());
  }
  void Update(const itkit::pipeline::Progress& p) {
    if (quiet_) return;
    std::lock_guard<std::mutex> lock(mu_);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_) {
      std::string bar;
      if (p.stage == "windows" && p.windows_total > 0) {
        const int width = 30;
        const int filled = static_cast<int>(width * p.windows_done / p.windows_total);
        bar = "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') +
              "] " + std::to_string(p.windows_done) + "/" + std::to_string(p.windows_total) + " windows";
      } else {
        bar = p.stage;
      }
      std::fprintf(stderr, "\r\033[K%s  %s  %.1fs", prefix_.c_str(), bar.c_str(), s);
      std::fflush(stderr);
      bar_shown_ = true;
    } else if (p.stage == "windows" && p.windows_total > 0) {
      const int decile = static_cast<int>(10 * p.windows_done / p.windows_total);
      if (decile != last_decile_) {
        last_decile_ = decile;
        std::fprintf(stderr, "%s: windows %lld/%lld (%.1fs)\n", prefix_.c_str(),
                     static_cast<long long>(p.windows_done), static_cast<long long>(p.windows_total), s);
      }
    } else {
      std::fprintf(stderr, "%s: %s (%.1fs)\n", prefix_.c_str(), p.stage.c_str(), s);
    }
  }
  // Prints a full line (log message, result) without tearing the bar.
  void Line(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    if (tty_ && bar_shown_) std::fputs("\r\033[K", stderr);
    bar_shown_ = false;
    std::fprintf(stderr, "%s\n", text.c_str());
  }

 private:
  std::mutex mu_;
  bool tty_, quiet_;
  bool bar_shown_ = false;
  int last_decile_ = -1;
  std::string prefix_;
  std::chrono::steady_clock::time_point start_;
};

std::string TimingLine(const itkit::pipeline::SegmentReport& r) {
  static const char* kOrder[] = {"read", "preprocess", "resample", "queue", "extract", "network",
                                 "accumulate", "argmax", "restore", "stats", "write", "total"};
  std::string s;
  for (const char* k : kOrder) {
    auto it = r.stage_seconds.find(k);
    if (it == r.stage_seconds.end()) continue;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%s %.3f", s.empty() ? "" : "  ", k, it->second);
    s += buf;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = itkit::cli::ParseInferArgs(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "itkit_infer: %s\n\n%s", parsed.status().message().c_str(), itkit::cli::InferUsage().c_str());
    return 2;
  }
  InferArgs a = std::move(parsed).value();
  if (a.help) {
    std::fputs(itkit::cli::InferUsage().c_str(), stdout);
    return 0;
  }
  ProgressView view(isatty(STDERR_FILENO) != 0, a.quiet);
  itkit::SetLogSink([&](itkit::LogLevel level, std::string_view msg) {
    const char* tag = level == itkit::LogLevel::kError ? "error" : level == itkit::LogLevel::kWarning ? "warning" : "info";
    view.Line(std::string("itkit_infer: ") + tag + ": " + std::string(msg));
  });

  auto jobs = PlanJobs(a);
  if (!jobs.ok()) {
    std::fprintf(stderr, "itkit_infer: %s\n", jobs.status().message().c_str());
    return 2;
  }
  if (jobs->size() > 1 && !a.probabilities.empty()) {
    std::fprintf(stderr, "itkit_infer: --probabilities takes one input file\n");
    return 2;
  }
  auto model = itkit::pipeline::SegmentationModel::Load(a.load);
  if (!model.ok()) {
    std::fprintf(stderr, "itkit_infer: cannot load model %s: %s\n", a.load.model_path.c_str(),
                 model.status().message().c_str());
    return 1;
  }
  const auto& info = (*model)->info();
  if (!a.quiet)
    view.Line("itkit_infer: model '" + info.name + "', " + std::to_string(info.num_classes) + " classes, network on " +
              info.backend);

  std::ofstream timing_json;
  if (!a.timing_json.empty()) timing_json.open(a.timing_json, std::ios::app);
  std::vector<std::string> failed;
  for (size_t i = 0; i < jobs->size(); ++i) {
    const auto& job = (*jobs)[i];
    itkit::pipeline::SegmentRequest req = a.request;
    req.input_path = job.input;
    req.output_path = job.output;
    req.stats_path = job.stats;
    req.probabilities_path = a.probabilities;
    view.Start(i, jobs->size(), fs::path(job.input).filename().string());
    auto report = (*model)->Segment(req, [&](const itkit::pipeline::Progress& p) { view.Update(p); }, nullptr);
    if (!report.ok()) {
      view.Line("itkit_infer: FAILED " + job.input + ": " + report.status().message());
      failed.push_back(job.input);
      continue;
    }
    for (const auto& note : report->notes) view.Line("itkit_infer: note: " + job.input + ": " + note);
    if (!a.quiet)
      view.Line("itkit_infer: " + job.input + " -> " + job.output + " (" + std::to_string(report->windows) +
                " windows, " + report->orientation + " input)");
    if (a.timing) view.Line("timing " + fs::path(job.input).filename().string() + ": " + TimingLine(*report));
    if (timing_json.is_open()) {
      nlohmann::json j = {{"input", job.input},      {"output", job.output},  {"seconds", report->stage_seconds},
                          {"cpu_seconds", report->stage_cpu_seconds},
                          {"windows", report->windows}, {"size", report->size}, {"device", report->device},
                          {"batch", report->batch},   {"orientation", report->orientation}};
      timing_json << j.dump() << "\n";
    }
  }
  if (!failed.empty()) {
    std::fprintf(stderr, "itkit_infer: %zu of %zu file(s) failed:\n", failed.size(), jobs->size());
    for (const auto& f : failed) std::fprintf(stderr, "  %s\n", f.c_str());
    return 1;
  }
  return 0;
}
