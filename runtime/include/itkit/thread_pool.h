// A fixed pool of worker threads with a blocking parallel-for. Kernels split work
// into contiguous ranges; the calling thread takes part, so a pool of 1 runs inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace itkit {

class ThreadPool {
 public:
  // threads <= 0 picks the hardware concurrency.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over [0, n) in at most size()*chunks_per_thread ranges of at
  // least min_grain items each. Blocks until all ranges ran. Not reentrant: a kernel
  // must not call ParallelFor from inside fn (nested calls run inline).
  void ParallelFor(int64_t n, int64_t min_grain,
                   const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  bool RunOneTask();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 0, next_begin_ = 0;
  int64_t pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  bool busy_ = false;
};

// Runs fn over [0,n) on `pool` if given, else inline.
void ParallelFor(ThreadPool* pool, int64_t n, int64_t min_grain,
                 const std::function<void(int64_t, int64_t)>& fn);

}  // namespace itkit
