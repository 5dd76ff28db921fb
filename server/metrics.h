// Prometheus text exposition (format 0.0.4) without a client library: a few
// counter and histogram families, plus gauges the /metrics route computes at
// scrape time (queue length, jobs, models, GPU memory).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace itkit::server {

using Labels = std::vector<std::pair<std::string, std::string>>;

class CounterFamily {
 public:
  CounterFamily(std::string name, std::string help) : name_(std::move(name)), help_(std::move(help)) {}
  void Inc(const Labels& labels, double v = 1);
  double Get(const Labels& labels) const;
  void Render(std::string* out) const;

 private:
  std::string name_, help_;
  mutable std::mutex mu_;
  std::map<Labels, double> values_;
};

class HistogramFamily {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<double> buckets)
      : name_(std::move(name)), help_(std::move(help)), buckets_(std::move(buckets)) {}
  void Observe(const Labels& labels, double v);
  uint64_t Count(const Labels& labels) const;
  void Render(std::string* out) const;

 private:
  struct Series {
    std::vector<uint64_t> counts;  // per bucket, not cumulative
    double sum = 0;
    uint64_t count = 0;
  };
  std::string name_, help_;
  std::vector<double> buckets_;
  mutable std::mutex mu_;
  std::map<Labels, Series> series_;
};

struct GaugeSample {
  std::string name;
  std::string help;
  Labels labels;
  double value = 0;
};

class Metrics {
 public:
  Metrics();
  // endpoint = the route pattern ("/api/jobs/{id}"), so ids do not explode the
  // label set; unknown paths are "other".
  void ObserveRequest(const std::string& endpoint, const std::string& method, int status, double seconds,
                      int64_t bytes_in, int64_t bytes_out);
  void ObserveStage(const std::string& stage, double seconds);
  void JobFinished(const std::string& state) { jobs_finished_.Inc({{"state", state}}); }
  void ModelLoad(bool ok) { model_loads_.Inc({{"result", ok ? "success" : "error"}}); }
  void Rejected(const std::string& reason) { rejected_.Inc({{"reason", reason}}); }

  // The whole exposition: our families, then the gauges (grouped by name).
  std::string Render(const std::vector<GaugeSample>& gauges) const;

  const CounterFamily& requests() const { return requests_; }

 private:
  CounterFamily requests_;
  HistogramFamily request_seconds_;
  HistogramFamily stage_seconds_;
  CounterFamily bytes_;
  CounterFamily jobs_finished_;
  CounterFamily model_loads_;
  CounterFamily rejected_;
};

// Label value escaping of the text format (backslash, quote, newline).
std::string EscapeLabelValue(const std::string& v);
std::string FormatMetricValue(double v);

}  // namespace itkit::server
