#include "volume.h"

#include <sys/mman.h>

namespace itkit::pipeline {

void* AllocateMapped(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return p;
}

void FreeMapped(void* p, size_t bytes) { munmap(p, bytes); }

}  // namespace itkit::pipeline
