// Byte alignment of workspace regions in the CPU kernels.
#pragma once

#include <cstddef>

namespace itkit::cpu {

// Rounds a byte offset up so every workspace region starts on a cache line.
inline size_t AlignUp(size_t bytes, size_t alignment = 64) { return (bytes + alignment - 1) / alignment * alignment; }

}  // namespace itkit::cpu
