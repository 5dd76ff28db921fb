#include "server/handler_threads.h"

namespace itkit::server {

bool HandlerThreads::Start(int count) {
  std::vector<pthread_t> started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!threads_.empty()) return true;
    stop_ = false;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return false;
    pthread_attr_setstacksize(&attr, kStackBytes);
    for (int i = 0; i < count; ++i) {
      pthread_t t;
      if (pthread_create(&t, &attr, &HandlerThreads::ThreadMain, this) != 0) break;
      threads_.push_back(t);
    }
    pthread_attr_destroy(&attr);
    if (static_cast<int>(threads_.size()) == count) return true;
    stop_ = true;  // partial start: undo it, the caller reports the failure
    started.swap(threads_);
  }
  work_cv_.notify_all();
  for (pthread_t t : started) pthread_join(t, nullptr);
  return false;
}

void HandlerThreads::Stop() {
  std::vector<pthread_t> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    threads.swap(threads_);
  }
  work_cv_.notify_all();
  for (pthread_t t : threads) pthread_join(t, nullptr);
}

void HandlerThreads::Run(const std::function<void()>& task) {
  std::unique_lock<std::mutex> lock(mu_);
  if (threads_.empty() || stop_) {
    lock.unlock();
    task();
    return;
  }
  Pending pending;
  pending.task = &task;
  queue_.push_back(&pending);
  work_cv_.notify_one();
  pending.done_cv.wait(lock, [&] { return pending.done; });
}

void* HandlerThreads::ThreadMain(void* self) {
  static_cast<HandlerThreads*>(self)->Loop();
  return nullptr;
}

void HandlerThreads::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left to run
    Pending* p = queue_.front();
    queue_.pop_front();
    lock.unlock();
    try {
      (*p->task)();
    } catch (...) {
      // Serve catches everything it expects; whatever still escapes (say
      // bad_alloc while building the 500 answer) must not end the thread
      // (std::terminate) nor leave the CivetWeb worker waiting forever.
    }
    lock.lock();
    p->done = true;
    p->done_cv.notify_one();
  }
}

}  // namespace itkit::server
