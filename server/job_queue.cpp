#include "server/job_queue.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "itkit/log.h"

namespace itkit::server {

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool IsToken(const std::string& k) {
  return !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

}  // namespace

std::vector<std::pair<std::string, double>> PipelineStages(const std::map<std::string, double>& stage_seconds) {
  // The pipeline's own "queue" (waiting for the model's device) and "total"
  // would collide with the server's queue and total; "windows" sums the
  // window loop's parts, as the stage the job status reports.
  std::vector<std::pair<std::string, double>> out;
  auto get = [&](const char* k) -> std::optional<double> {
    auto it = stage_seconds.find(k);
    return it == stage_seconds.end() ? std::nullopt : std::optional<double>(it->second);
  };
  static const char* kOrder[] = {"read", "preprocess", "resample", "queue", "windows", "extract", "network",
                                 "accumulate", "argmax", "restore", "postprocess", "stats", "write", "total"};
  double windows = 0;
  bool have_windows = false;
  for (const char* k : {"extract", "network", "accumulate"}) {
    if (auto v = get(k)) {
      windows += *v;
      have_windows = true;
    }
  }
  for (const char* k : kOrder) {
    std::string name = k;
    std::optional<double> v = name == "windows" && !get("windows") && have_windows ? std::optional<double>(windows) : get(k);
    if (!v) continue;
    if (name == "queue") name = "device_queue";
    if (name == "total") name = "inference";
    out.emplace_back(name, *v);
  }
  for (const auto& [k, v] : stage_seconds) {
    if (std::find_if(std::begin(kOrder), std::end(kOrder), [&](const char* o) { return k == o; }) == std::end(kOrder) &&
        IsToken(k)) {
      out.emplace_back(k, v);
    }
  }
  return out;
}

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

JobState Job::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

nlohmann::json Job::ToJson(bool with_result_url) const {
  std::lock_guard<std::mutex> lock(mu_);
  Clock::time_point end = finished_ ? *finished_ : Clock::now();
  nlohmann::json j = {
      {"id", id_},
      {"job_id", id_},
      {"state", JobStateName(state_)},
      {"stage", stage_},
      {"model", input_.model ? input_.model->name : ""},
      {"device", input_.device},
      {"windows_done", windows_done_},
      {"windows_total", windows_total_},
      {"elapsed_s", Seconds(end - created_)},
  };
  double progress = 0;
  if (state_ == JobState::kDone) progress = 1;
  else if (windows_total_ > 0) progress = static_cast<double>(windows_done_) / static_cast<double>(windows_total_);
  j["progress"] = progress;
  if (started_) j["queue_s"] = Seconds(*started_ - created_);
  if (state_ == JobState::kFailed || state_ == JobState::kCancelled) j["error"] = error_.message;
  if (state_ == JobState::kDone && with_result_url) j["result_url"] = "/api/jobs/" + id_ + "/result";
  nlohmann::json stages = nlohmann::json::object();
  stages["upload"] = input_.upload_seconds;
  for (const auto& [k, v] : PipelineStages(report_.stage_seconds)) stages[k] = v;
  j["stage_seconds"] = stages;
  if (!report_.notes.empty()) j["notes"] = report_.notes;
  if (!report_.device.empty()) j["network_device"] = report_.device;  // where the network ran (when done)
  if (!report_.accumulate_device.empty()) j["accumulate_device"] = report_.accumulate_device;  // and the logits summed
  return j;
}

std::string Job::ServerTiming() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s = TimingEntry("upload", input_.upload_seconds);
  if (started_) s += ", " + TimingEntry("queue", Seconds(*started_ - created_));
  for (const auto& [k, v] : PipelineStages(report_.stage_seconds)) s += ", " + TimingEntry(k, v);
  return s;
}

ApiResult<std::shared_ptr<TempFile>> Job::Result() const {
  std::lock_guard<std::mutex> lock(mu_);
  switch (state_) {
    case JobState::kDone: return output_;
    case JobState::kFailed:
    case JobState::kCancelled: return error_;
    default:
      return MakeError(409, "job " + id_ + " is " + JobStateName(state_) + "; poll GET /api/jobs/" + id_ +
                                " until its state is done");
  }
}

JobQueue::JobQueue(Options options, Metrics* metrics) : options_(std::move(options)), metrics_(metrics) {
  janitor_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!janitor_stop_) {
      janitor_cv_.wait_for(lock, std::chrono::milliseconds(200));
      if (janitor_stop_) break;
      lock.unlock();
      Housekeep();
      lock.lock();
    }
  });
}

JobQueue::~JobQueue() { Shutdown(std::chrono::milliseconds(0)); }

int JobQueue::RetryAfterLocked(const Device& d) const {
  double workers = std::max(1, options_.workers_per_device);
  double s = std::ceil(mean_job_seconds_ * static_cast<double>(d.queue.size() + 1) / workers);
  return static_cast<int>(std::clamp(s, 1.0, 600.0));
}

ApiStatus JobQueue::CheckCapacity(const std::string& device) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return MakeError(503, "server is shutting down", 5);
  auto it = devices_.find(device);
  if (it != devices_.end() && static_cast<int>(it->second.queue.size()) >= options_.capacity_per_device) {
    if (metrics_) metrics_->Rejected("queue_full");
    return MakeError(503, "the " + device + " inference queue is full (" + std::to_string(it->second.queue.size()) +
                              " waiting); retry later",
                     RetryAfterLocked(it->second));
  }
  return ApiOk();
}

ApiResult<std::shared_ptr<Job>> JobQueue::Submit(JobInput input) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return MakeError(503, "server is shutting down", 5);
  Device& d = devices_[input.device];
  if (static_cast<int>(d.queue.size()) >= options_.capacity_per_device) {
    if (metrics_) metrics_->Rejected("queue_full");
    return MakeError(503, "the " + input.device + " inference queue is full (" + std::to_string(d.queue.size()) +
                              " waiting); retry later",
                     RetryAfterLocked(d));
  }
  if (static_cast<int>(jobs_.size()) >= options_.max_jobs) {
    // Make room by dropping the oldest finished asynchronous job.
    auto oldest = jobs_.end();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      std::lock_guard<std::mutex> jl(it->second->mu_);
      if (!it->second->input_.sync && IsFinished(it->second->state_) &&
          (oldest == jobs_.end() || it->second->created_ < oldest->second->created_)) {
        oldest = it;
      }
    }
    if (oldest == jobs_.end()) {
      if (metrics_) metrics_->Rejected("too_many_jobs");
      return MakeError(503, "too many jobs in progress; retry later", 10);
    }
    jobs_.erase(oldest);
  }
  std::string device = input.device;
  auto job = std::make_shared<Job>(RandomHex(16), std::move(input));
  jobs_[job->id()] = job;
  d.queue.push_back(job);
  if (d.workers.empty()) {
    for (int i = 0; i < std::max(1, options_.workers_per_device); ++i) {
      d.workers.emplace_back([this, device] { WorkerLoop(device); });
    }
  }
  work_cv_.notify_all();
  return job;
}

void JobQueue::WorkerLoop(const std::string& device) {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      Device& d = devices_[device];
      work_cv_.wait(lock, [&] { return stopping_ || !d.queue.empty(); });
      if (d.queue.empty()) return;  // stopping
      job = d.queue.front();
      d.queue.pop_front();
      d.running++;
    }
    Run(job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      devices_[device].running--;
    }
  }
}

void JobQueue::Finish(Job& job, JobState state, ApiError error) {
  {
    std::lock_guard<std::mutex> lock(job.mu_);
    if (IsFinished(job.state_)) return;
    job.state_ = state;
    job.finished_ = Clock::now();
    job.error_ = std::move(error);
    if (state != JobState::kDone) job.output_.reset();
    job.input_.image.reset();  // the upload is no longer needed
    job.cv_.notify_all();
  }
  if (metrics_) metrics_->JobFinished(JobStateName(state));
}

void JobQueue::Run(const std::shared_ptr<Job>& job_ptr) {
  Job& job = *job_ptr;
  {
    std::lock_guard<std::mutex> lock(job.mu_);
    if (job.state_ != JobState::kQueued) return;  // cancelled while dequeued
  }
  if (job.cancel_) {
    Finish(job, JobState::kCancelled, job.cancel_reason_);
    return;
  }
  ModelUse use(job.input_.model);
  if (!use) {
    Finish(job, JobState::kFailed,
           MakeError(409, "model '" + job.input_.model->name + "' was unloaded before this request started"));
    return;
  }
  pipeline::SegmentRequest request = job.input_.request;
  request.input_path = job.input_.image ? job.input_.image->path() : "";
  auto output = std::make_shared<TempFile>(UniqueTempPath(options_.temp_dir, "result", job.input_.output_suffix));
  request.output_path = output->path();
  Clock::time_point started = Clock::now();
  {
    std::lock_guard<std::mutex> lock(job.mu_);
    job.state_ = JobState::kRunning;
    job.started_ = started;
    job.stage_ = "read";
  }
  if (metrics_) metrics_->ObserveStage("queue", Seconds(started - job.created_));
  pipeline::ProgressFn progress = [&job](const pipeline::Progress& p) {
    std::lock_guard<std::mutex> lock(job.mu_);
    job.stage_ = p.stage;
    job.windows_done_ = p.windows_done;
    job.windows_total_ = p.windows_total;
  };
  // The pipeline returns errors as values; a throw would still be a bug we
  // must not let take the server down.
  auto run = [&]() -> itkit::Result<pipeline::SegmentReport> {
    try {
      return use.get()->Segment(request, progress, &job.cancel_);
    } catch (const std::exception& e) {
      return Internal("inference threw: ", e.what());
    } catch (...) {
      return Internal("inference threw an unknown exception");
    }
  };
  itkit::Result<pipeline::SegmentReport> result = run();
  double seconds = Seconds(Clock::now() - started);
  {
    std::lock_guard<std::mutex> lock(mu_);
    mean_job_seconds_ = 0.8 * mean_job_seconds_ + 0.2 * seconds;
  }
  std::error_code ec;
  if (result.ok() && !std::filesystem::exists(output->path(), ec)) {
    result = Internal("the pipeline reported success but wrote no output file");
  }
  if (result.ok()) {
    {
      std::lock_guard<std::mutex> lock(job.mu_);
      job.report_ = std::move(result).value();
      job.output_ = output;
      job.stage_ = "done";
      job.windows_done_ = job.windows_total_ = std::max(job.windows_total_, job.report_.windows);
    }
    if (metrics_) {
      metrics_->ObserveStage("upload", job.input_.upload_seconds);
      for (const auto& [k, v] : PipelineStages(job.report_.stage_seconds)) metrics_->ObserveStage(k, v);
    }
    Finish(job, JobState::kDone, ApiError{});
  } else if (job.cancel_) {
    ApiError reason;
    {
      std::lock_guard<std::mutex> lock(job.mu_);
      reason = job.cancel_reason_;
    }
    Finish(job, JobState::kCancelled, reason);
  } else {
    ApiError e = FromStatus(result.status(), "inference failed");
    Log(e.http_status >= 500 ? LogLevel::kError : LogLevel::kInfo, "job " + job.id() + ": " + e.message);
    Finish(job, JobState::kFailed, e);
  }
}

void JobQueue::RequestCancel(Job& job, ApiError reason) {
  // Caller holds job.mu_.
  job.cancel_reason_ = std::move(reason);
  job.cancel_ = true;
}

std::shared_ptr<Job> JobQueue::Find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second->input_.sync) return nullptr;
  return it->second;
}

ApiResult<nlohmann::json> JobQueue::Cancel(const std::string& id) {
  std::shared_ptr<Job> job;
  ApiError reason = MakeError(409, "job " + id + " was cancelled");
  nlohmann::json out = {{"status", "success"}, {"id", id}};
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second->input_.sync) {
      return MakeError(404, "job " + id + " not found (unknown, deleted or expired)");
    }
    job = it->second;
    std::lock_guard<std::mutex> jl(job->mu_);
    switch (job->state_) {
      case JobState::kQueued: {
        if (job->cancel_) return MakeError(409, "job " + id + " is already cancelled");
        auto& q = devices_[job->input_.device].queue;
        q.erase(std::remove(q.begin(), q.end(), job), q.end());
        RequestCancel(*job, reason);
        out["state"] = "cancelled";
        break;
      }
      case JobState::kRunning:
        if (job->cancel_) return MakeError(409, "job " + id + " is already being cancelled");
        RequestCancel(*job, reason);
        out["state"] = "cancelling";
        return out;
      case JobState::kCancelled:
        return MakeError(409, "job " + id + " is already cancelled");
      case JobState::kDone:
      case JobState::kFailed:
        jobs_.erase(it);  // its result file goes with the last reference
        out["state"] = "deleted";
        return out;
    }
  }
  Finish(*job, JobState::kCancelled, reason);
  return out;
}

bool JobQueue::Wait(Job& job, Clock::time_point until) const {
  std::unique_lock<std::mutex> lock(job.mu_);
  return job.cv_.wait_until(lock, until, [&] { return IsFinished(job.state_); });
}

void JobQueue::Forget(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.erase(id);
}

std::vector<std::shared_ptr<Job>> JobQueue::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Job>> out;
  for (const auto& [id, job] : jobs_) {
    if (!job->input_.sync) out.push_back(job);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->created() < b->created(); });
  return out;
}

JobQueue::Stats JobQueue::GetStats() const {
  Stats s;
  std::lock_guard<std::mutex> lock(mu_);
  for (const char* dev : {"cpu", "cuda"}) {
    s.queued_by_device[dev] = 0;
    s.running_by_device[dev] = 0;
  }
  for (const auto& [name, d] : devices_) {
    s.queued_by_device[name] = static_cast<int>(d.queue.size());
    s.running_by_device[name] = d.running;
  }
  for (JobState st : {JobState::kQueued, JobState::kRunning, JobState::kDone, JobState::kFailed, JobState::kCancelled}) {
    s.by_state[JobStateName(st)] = 0;
  }
  for (const auto& [id, job] : jobs_) s.by_state[JobStateName(job->state())]++;
  return s;
}

void JobQueue::Housekeep() {
  Clock::time_point now = Clock::now();
  std::vector<std::shared_ptr<Job>> expired_in_queue;
  std::vector<std::shared_ptr<Job>> drop;  // destroyed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.time_limit_s));
    const auto ttl = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.ttl_s));
    const std::string limit_text = std::to_string(static_cast<int64_t>(options_.time_limit_s));
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      Job& job = *it->second;
      std::lock_guard<std::mutex> jl(job.mu_);
      if (!IsFinished(job.state_) && !job.cancel_ && now - job.created_ > limit) {
        if (job.state_ == JobState::kQueued) {
          auto& q = devices_[job.input_.device].queue;
          q.erase(std::remove(q.begin(), q.end(), it->second), q.end());
          RequestCancel(job, MakeError(504, "the time limit of " + limit_text +
                                                " s was reached while the request waited in the queue"));
          expired_in_queue.push_back(it->second);
        } else {
          RequestCancel(job, MakeError(504, "inference exceeded the time limit of " + limit_text + " s"));
        }
      }
      if (!job.input_.sync && job.finished_ && now - *job.finished_ > ttl) {
        drop.push_back(it->second);
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& job : expired_in_queue) Finish(*job, JobState::kCancelled, job->cancel_reason_);
}

void JobQueue::Shutdown(std::chrono::milliseconds grace) {
  std::vector<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [name, d] : devices_) {
      for (auto& job : d.queue) {
        std::lock_guard<std::mutex> jl(job->mu_);
        RequestCancel(*job, MakeError(503, "server is shutting down", 5));
        dropped.push_back(job);
      }
      d.queue.clear();
    }
    work_cv_.notify_all();
  }
  for (auto& job : dropped) Finish(*job, JobState::kCancelled, job->cancel_reason_);
  // Let running inferences finish within the grace period, then cancel them.
  Clock::time_point until = Clock::now() + grace;
  auto running = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (auto& [name, d] : devices_) n += d.running;
    return n;
  };
  while (running() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, job] : jobs_) {
      std::lock_guard<std::mutex> jl(job->mu_);
      if (job->state_ == JobState::kRunning && !job->cancel_) {
        RequestCancel(*job, MakeError(503, "server is shutting down", 5));
      }
    }
  }
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, d] : devices_) {
      for (auto& t : d.workers) workers.push_back(std::move(t));
      d.workers.clear();
    }
  }
  for (auto& t : workers) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    janitor_stop_ = true;
    janitor_cv_.notify_all();
  }
  if (janitor_.joinable()) janitor_.join();
}

}  // namespace itkit::server
