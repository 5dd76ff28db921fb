// The CPU backend: runs every op of the runtime's op table; the reference and the
// fallback for all other backends.
#pragma once

#include <memory>

#include "itkit/backend.h"

namespace itkit {

// Kernels split their work over KernelContext::pool (the session's thread pool).
std::shared_ptr<Backend> CreateCpuBackend();

}  // namespace itkit
