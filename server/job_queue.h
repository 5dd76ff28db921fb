// Inference jobs: one bounded FIFO per device ("cpu", "cuda") with its own
// worker threads, so a full GPU queue answers 503 instead of piling up, and
// HTTP threads stay free for health/info/metrics. Synchronous /api/infer calls
// are jobs too (hidden from listings) and wait for their own completion.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "itkit/pipeline.h"
#include "server/api_error.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/temp_files.h"

namespace itkit::server {

// The pipeline's stage timings as the server reports them (Server-Timing,
// job status, metrics): a fixed order, names that do not clash with ours.
std::vector<std::pair<std::string, double>> PipelineStages(const std::map<std::string, double>& stage_seconds);

enum class JobState { kQueued, kRunning, kDone, kFailed, kCancelled };
const char* JobStateName(JobState state);
inline bool IsFinished(JobState s) { return s == JobState::kDone || s == JobState::kFailed || s == JobState::kCancelled; }

struct JobInput {
  std::shared_ptr<ModelEntry> model;
  std::shared_ptr<TempFile> image;     // the upload, with a file-type suffix
  pipeline::SegmentRequest request;    // input/output paths are filled in by the queue
  std::string output_suffix = ".nii.gz";
  std::string result_filename = "segmentation.nii.gz";
  std::string device = "cpu";
  double upload_seconds = 0;
  bool sync = false;                   // /api/infer: not listed, removed by the caller
};

class Job {
 public:
  Job(std::string id, JobInput input) : id_(std::move(id)), input_(std::move(input)) {}
  const std::string& id() const { return id_; }
  const JobInput& input() const { return input_; }

  JobState state() const;
  nlohmann::json ToJson(bool with_result_url) const;
  // "upload;dur=..,queue;dur=..,read;dur=..." for Server-Timing.
  std::string ServerTiming() const;
  // Result file (done) or the error (failed, cancelled, not finished).
  ApiResult<std::shared_ptr<TempFile>> Result() const;
  Clock::time_point created() const { return created_; }

 private:
  friend class JobQueue;
  const std::string id_;
  JobInput input_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  JobState state_ = JobState::kQueued;
  std::string stage_ = "queued";
  int64_t windows_done_ = 0, windows_total_ = 0;
  Clock::time_point created_ = Clock::now();
  std::optional<Clock::time_point> started_, finished_;
  ApiError error_;
  std::shared_ptr<TempFile> output_;
  pipeline::SegmentReport report_;
  std::atomic<bool> cancel_{false};
  ApiError cancel_reason_;  // set with cancel_: what the client will be told
};

class JobQueue {
 public:
  struct Options {
    int capacity_per_device = 16;
    int workers_per_device = 1;
    double time_limit_s = 600;
    double ttl_s = 3600;
    int max_jobs = 1000;
    std::string temp_dir;
  };
  JobQueue(Options options, Metrics* metrics);
  ~JobQueue();

  // 503 + Retry-After when the device queue is full or the server stops.
  ApiResult<std::shared_ptr<Job>> Submit(JobInput input);
  // Fails fast before an upload: would a job for this device be accepted now?
  ApiStatus CheckCapacity(const std::string& device) const;
  std::shared_ptr<Job> Find(const std::string& id) const;
  // Cancels a queued/running job; deletes a finished one. 409 when the job
  // was already cancelled, 404 when unknown.
  ApiResult<nlohmann::json> Cancel(const std::string& id);
  // Blocks until the job finishes or `until`; true when finished.
  bool Wait(Job& job, Clock::time_point until) const;
  // Drops a job (synchronous requests, after the response was sent).
  void Forget(const std::string& id);
  std::vector<std::shared_ptr<Job>> List() const;

  struct Stats {
    std::map<std::string, int> queued_by_device, running_by_device;
    std::map<std::string, int> by_state;
  };
  Stats GetStats() const;

  // Stops accepting; queued jobs are cancelled at once, running ones get
  // `grace` to finish and are then cancelled; workers are joined.
  void Shutdown(std::chrono::milliseconds grace);

  // Expiry and time limits; called by the janitor thread (and tests).
  void Housekeep();

 private:
  struct Device {
    std::deque<std::shared_ptr<Job>> queue;
    std::vector<std::thread> workers;
    int running = 0;
  };
  void WorkerLoop(const std::string& device);
  void Run(const std::shared_ptr<Job>& job);
  void Finish(Job& job, JobState state, ApiError error);
  int RetryAfterLocked(const Device& d) const;
  static void RequestCancel(Job& job, ApiError reason);

  Options options_;
  Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable janitor_cv_;
  std::map<std::string, Device> devices_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  bool stopping_ = false;
  bool janitor_stop_ = false;
  double mean_job_seconds_ = 1.0;  // EWMA, for Retry-After
  std::thread janitor_;
};

}  // namespace itkit::server
