#include "itkit/thread_pool.h"

#include <algorithm>

namespace itkit {
namespace {
thread_local bool tls_inside_parallel_for = false;
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

// Takes one chunk of the current job and runs it. Called with mutex_ held; returns
// with it held. False when no chunk was left.
bool ThreadPool::RunOneTask() {
  if (!job_ || next_begin_ >= job_n_) return false;
  const int64_t begin = next_begin_;
  const int64_t end = std::min(job_n_, begin + job_chunk_);
  next_begin_ = end;
  const auto* fn = job_;
  mutex_.unlock();
  tls_inside_parallel_for = true;
  (*fn)(begin, end);
  tls_inside_parallel_for = false;
  mutex_.lock();
  if (--pending_ == 0) done_cv_.notify_all();
  return true;
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  uint64_t seen = 0;
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || (job_ && generation_ != seen && next_begin_ < job_n_); });
    if (stop_) return;
    while (RunOneTask()) {
    }
    seen = generation_;
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t min_grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  min_grain = std::max<int64_t>(1, min_grain);
  const int64_t max_chunks = std::max<int64_t>(1, std::min<int64_t>(size() * 4, n / min_grain));
  if (max_chunks == 1 || workers_.empty() || tls_inside_parallel_for) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  // One job at a time: a second caller thread waits its turn.
  done_cv_.wait(lock, [&] { return !busy_; });
  busy_ = true;
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = (n + max_chunks - 1) / max_chunks;
  next_begin_ = 0;
  pending_ = (n + job_chunk_ - 1) / job_chunk_;
  ++generation_;
  work_cv_.notify_all();
  while (RunOneTask()) {
  }
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  busy_ = false;
  done_cv_.notify_all();
}

void ParallelFor(ThreadPool* pool, int64_t n, int64_t min_grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (pool) {
    pool->ParallelFor(n, min_grain, fn);
  } else if (n > 0) {
    fn(0, n);
  }
}

}  // namespace itkit
