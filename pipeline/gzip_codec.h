// Whole-buffer gzip for the fast NIfTI paths: libdeflate when the build has it (about
// twice zlib's speed either way), zlib otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "itkit/status.h"
#include "itkit/thread_pool.h"

namespace itkit::pipeline {

// Inflates every gzip member of `in` into `out` (capacity `cap`); returns the bytes
// written. Errors on corrupt data or when the data would not fit in `cap`.
Result<size_t> GunzipInto(const uint8_t* in, size_t n, uint8_t* out, size_t cap);

// One gzip member of `in` at `level` (1 fastest .. 9).
Result<std::vector<uint8_t>> GzipCompress(const uint8_t* in, size_t n, int level);

// `in` as consecutive gzip members of at least 16 MiB compressed in parallel; their
// concatenation is one valid gzip file (RFC 1952 §2.2) that zlib, Python and ITK
// read whole. `label_bytes` (1 or 2) says `in` is a label map of such voxels: at
// level 1 it is then run-length coded (GzipRunLength) where that pays.
Result<std::vector<std::vector<uint8_t>>> GzipMembers(const uint8_t* in, size_t n, int level, ThreadPool* pool,
                                                      size_t label_bytes = 0);

}  // namespace itkit::pipeline
