#include "volume.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace itkit::pipeline {

void* AllocateMapped(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return p;
}

void FreeMapped(void* p, size_t bytes) { munmap(p, bytes); }

Prefaulter::~Prefaulter() {
  if (thread_ && thread_->joinable()) thread_->join();
}

void Prefaulter::Start(std::vector<std::pair<void*, size_t>> ranges) {
#ifdef MADV_POPULATE_WRITE
  if (thread_) return;
  try {
    thread_ = std::make_unique<std::thread>([ranges = std::move(ranges)] {
      const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
      for (const auto& [p, bytes] : ranges) {
        // madvise wants a page-aligned start; the partial first page is the caller's.
        const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
        const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
        if (end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) != 0) return;
      }
    });
  } catch (const std::exception&) {
    thread_.reset();  // no thread: the caller faults the pages itself, as before
  }
#else
  (void)ranges;
#endif
}

}  // namespace itkit::pipeline
