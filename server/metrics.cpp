#include "server/metrics.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace itkit::server {

namespace {

std::string LabelString(const Labels& labels, const std::string& extra_name = "", const std::string& extra = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string s = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) s += ",";
    s += k + "=\"" + EscapeLabelValue(v) + "\"";
    first = false;
  }
  if (!extra_name.empty()) {
    if (!first) s += ",";
    s += extra_name + "=\"" + extra + "\"";
  }
  return s + "}";
}

void Header(std::string* out, const std::string& name, const std::string& help, const char* type) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

void CounterFamily::Inc(const Labels& labels, double v) {
  std::lock_guard<std::mutex> lock(mu_);
  values_[labels] += v;
}

double CounterFamily::Get(const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.find(labels);
  return it == values_.end() ? 0 : it->second;
}

void CounterFamily::Render(std::string* out) const {
  Header(out, name_, help_, "counter");
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, v] : values_) *out += name_ + LabelString(labels) + " " + FormatMetricValue(v) + "\n";
}

void HistogramFamily::Observe(const Labels& labels, double v) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series_[labels];
  if (s.counts.empty()) s.counts.assign(buckets_.size() + 1, 0);
  size_t i = 0;
  while (i < buckets_.size() && v > buckets_[i]) ++i;
  s.counts[i]++;
  s.sum += v;
  s.count++;
}

uint64_t HistogramFamily::Count(const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(labels);
  return it == series_.end() ? 0 : it->second.count;
}

void HistogramFamily::Render(std::string* out) const {
  Header(out, name_, help_, "histogram");
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [labels, s] : series_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      cumulative += s.counts[i];
      *out += name_ + "_bucket" + LabelString(labels, "le", FormatMetricValue(buckets_[i])) + " " +
              std::to_string(cumulative) + "\n";
    }
    *out += name_ + "_bucket" + LabelString(labels, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
    *out += name_ + "_sum" + LabelString(labels) + " " + FormatMetricValue(s.sum) + "\n";
    *out += name_ + "_count" + LabelString(labels) + " " + std::to_string(s.count) + "\n";
  }
}

Metrics::Metrics()
    : requests_("itkit_http_requests_total", "HTTP requests by endpoint, method and status."),
      request_seconds_("itkit_http_request_duration_seconds", "HTTP request duration by endpoint.",
                       {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}),
      stage_seconds_("itkit_inference_stage_duration_seconds",
                     "Duration of inference stages (upload, queue, read, preprocess, windows, postprocess, write).",
                     {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}),
      bytes_("itkit_http_bytes_total", "HTTP body bytes received (in) and sent (out)."),
      jobs_finished_("itkit_jobs_finished_total", "Inference jobs (including synchronous ones) by final state."),
      model_loads_("itkit_model_loads_total", "Model load attempts by result."),
      rejected_("itkit_requests_rejected_total", "Requests turned away before running (queue full, busy).") {}

void Metrics::ObserveRequest(const std::string& endpoint, const std::string& raw_method, int status, double seconds,
                             int64_t bytes_in, int64_t bytes_out) {
  // Methods come from clients: only known ones become label values.
  std::string method = "other";
  for (const char* m : {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}) {
    if (raw_method == m) method = m;
  }
  requests_.Inc({{"endpoint", endpoint}, {"method", method}, {"status", std::to_string(status)}});
  request_seconds_.Observe({{"endpoint", endpoint}}, seconds);
  if (bytes_in > 0) bytes_.Inc({{"direction", "in"}}, static_cast<double>(bytes_in));
  if (bytes_out > 0) bytes_.Inc({{"direction", "out"}}, static_cast<double>(bytes_out));
}

void Metrics::ObserveStage(const std::string& stage, double seconds) {
  stage_seconds_.Observe({{"stage", stage}}, seconds);
}

std::string Metrics::Render(const std::vector<GaugeSample>& gauges) const {
  std::string out;
  requests_.Render(&out);
  request_seconds_.Render(&out);
  stage_seconds_.Render(&out);
  bytes_.Render(&out);
  jobs_finished_.Render(&out);
  model_loads_.Render(&out);
  rejected_.Render(&out);
  // Gauges: one HELP/TYPE per name, samples in the order given.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const GaugeSample*>> by_name;
  for (const auto& g : gauges) {
    if (!by_name.count(g.name)) order.push_back(g.name);
    by_name[g.name].push_back(&g);
  }
  for (const auto& name : order) {
    Header(&out, name, by_name[name].front()->help, "gauge");
    for (const GaugeSample* g : by_name[name]) {
      out += name + LabelString(g->labels) + " " + FormatMetricValue(g->value) + "\n";
    }
  }
  return out;
}

}  // namespace itkit::server
