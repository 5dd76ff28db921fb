// Glue to oneDNN (Debian's libdnnl 2.6, OpenMP-threaded): one shared CPU engine,
// capping oneDNN's OpenMP team to the session's thread count, and dnnl::error →
// Status at the boundary (oneDNN's C++ API reports errors by throwing).
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <string>

#include "cpu/align.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit::cpu {

// The process-wide CPU engine (oneDNN engines are thread-safe to share).
const dnnl::engine& OnednnEngine();

// Sets the OpenMP team size for primitives executed from the calling thread.
// libgomp keeps this per calling thread, so concurrent sessions with different
// thread counts do not interfere. No-op if libgomp is not loaded.
void SetOnednnThreads(int threads);

// Plain row-major descriptor of a tensor shape.
dnnl::memory::desc PlainDesc(const Shape& shape);

inline Status OnednnError(const std::string& who, const dnnl::error& e) {
  return Internal(who, ": oneDNN: ", e.what());
}

}  // namespace itkit::cpu
