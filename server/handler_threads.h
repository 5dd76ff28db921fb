// Threads with full-size stacks that run the request handlers.
//
// Why: Debian's CivetWeb creates its workers with 100 KB stacks (a compile-time
// USE_STACK_SIZE). Handlers parse client-supplied YAML sidecars (yaml-cpp
// recurses per nesting level), DICOM headers (GDCM recurses into sequences) and
// ONNX models; a 400-deep YAML list overflowed the CivetWeb stack and killed the
// server. A CivetWeb worker now only moves bytes; it hands the handler to one of
// these threads and waits for it.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace itkit::server {

class HandlerThreads {
 public:
  // Stack size of each thread; 8 MiB is glibc's usual default.
  static constexpr size_t kStackBytes = size_t{8} << 20;

  HandlerThreads() = default;
  ~HandlerThreads() { Stop(); }
  HandlerThreads(const HandlerThreads&) = delete;
  HandlerThreads& operator=(const HandlerThreads&) = delete;

  // Starts `count` threads; false (and none kept) if the system refuses them.
  bool Start(int count);
  void Stop();

  // Runs `task` on a handler thread and returns when it has finished. An
  // exception escaping `task` is swallowed (the caller catches its own; this
  // only keeps the thread alive). Before Start (or after Stop), runs it on the
  // calling thread: only tests do that.
  void Run(const std::function<void()>& task);

 private:
  struct Pending {
    const std::function<void()>* task = nullptr;
    bool done = false;
    std::condition_variable done_cv;  // only its owner waits on it
  };
  static void* ThreadMain(void* self);
  void Loop();

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<Pending*> queue_;
  std::vector<pthread_t> threads_;
  bool stop_ = false;
};

}  // namespace itkit::server
