#include "gzip_codec.h"

#include <algorithm>
#include <memory>
#include <new>

#include "rle_deflate.h"

#ifdef ITKIT_HAVE_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

namespace itkit::pipeline {

#ifdef ITKIT_HAVE_LIBDEFLATE

Result<size_t> GunzipInto(const uint8_t* in, size_t n, uint8_t* out, size_t cap) {
  std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> d(
      libdeflate_alloc_decompressor(), libdeflate_free_decompressor);
  if (!d) return OutOfMemory("gzip: cannot allocate a decompressor");
  size_t in_pos = 0, out_pos = 0;
  while (in_pos < n) {
    size_t used = 0, written = 0;
    const libdeflate_result r =
        libdeflate_gzip_decompress_ex(d.get(), in + in_pos, n - in_pos, out + out_pos, cap - out_pos, &used, &written);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) return ResourceExhausted("gzip: data longer than expected");
    if (r != LIBDEFLATE_SUCCESS) {
      // Trailing zero padding after the last member is harmless; anything else is not.
      if (out_pos > 0 && std::all_of(in + in_pos, in + n, [](uint8_t b) { return b == 0; })) break;
      return InvalidArgument("gzip: corrupt or truncated data");
    }
    in_pos += used;
    out_pos += written;
  }
  return out_pos;
}

Result<std::vector<uint8_t>> GzipCompress(const uint8_t* in, size_t n, int level) {
  std::unique_ptr<libdeflate_compressor, void (*)(libdeflate_compressor*)> c(
      libdeflate_alloc_compressor(std::clamp(level, 1, 12)), libdeflate_free_compressor);
  if (!c) return OutOfMemory("gzip: cannot allocate a compressor");
  // Not a zero-filled vector of the bound: for an 84 MB label map that was 90 MB of
  // zeroing and page faults for a few MB of output.
  const size_t bound = libdeflate_gzip_compress_bound(c.get(), n);
  std::unique_ptr<uint8_t[]> out(new (std::nothrow) uint8_t[bound]);
  if (!out) return OutOfMemory("gzip: ", bound >> 20, " MiB");
  const size_t size = libdeflate_gzip_compress(c.get(), in, n, out.get(), bound);
  if (size == 0) return Internal("gzip: compression failed");
  return std::vector<uint8_t>(out.get(), out.get() + size);
}

#else  // zlib

Result<size_t> GunzipInto(const uint8_t* in, size_t n, uint8_t* out, size_t cap) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return Internal("zlib: init failed");
  size_t in_pos = 0, out_pos = 0;
  Status status;
  while (in_pos < n) {
    z.next_in = const_cast<uint8_t*>(in + in_pos);
    z.avail_in = static_cast<uInt>(std::min<size_t>(n - in_pos, 1u << 30));
    z.next_out = out + out_pos;
    z.avail_out = static_cast<uInt>(std::min<size_t>(cap - out_pos, 1u << 30));
    const size_t before_in = z.avail_in, before_out = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    in_pos += before_in - z.avail_in;
    out_pos += before_out - z.avail_out;
    if (rc == Z_STREAM_END) {
      inflateReset(&z);
      continue;
    }
    if (rc == Z_OK) {
      if (out_pos == cap && in_pos < n) { status = ResourceExhausted("gzip: data longer than expected"); break; }
      continue;
    }
    if (rc == Z_BUF_ERROR && in_pos == n) { status = InvalidArgument("gzip: truncated data"); break; }
    status = InvalidArgument("gzip: corrupt data");
    break;
  }
  inflateEnd(&z);
  if (!status.ok()) return status;
  return out_pos;
}

Result<std::vector<uint8_t>> GzipCompress(const uint8_t* in, size_t n, int level) {
  if (n >= (size_t{1} << 32) - 1) return Unsupported("zlib: buffers over 4 GiB (build with libdeflate)");
  z_stream z{};
  if (deflateInit2(&z, std::clamp(level, 1, 9), Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return Internal("zlib: init failed");
  std::vector<uint8_t> out(deflateBound(&z, static_cast<uLong>(n)) + 64);
  z.next_in = const_cast<uint8_t*>(in);
  z.avail_in = static_cast<uInt>(n);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t size = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return Internal("zlib: compression failed");
  out.resize(size);
  return out;
}

#endif

Result<std::vector<std::vector<uint8_t>>> GzipMembers(const uint8_t* in, size_t n, int level, ThreadPool* pool,
                                                      size_t label_bytes) {
  const size_t threads = pool != nullptr ? static_cast<size_t>(pool->size()) : 1;
  const size_t min_chunk = size_t{16} << 20;
  const size_t chunks = std::max<size_t>(1, std::min(threads, n / min_chunk));
  const size_t elem = std::max<size_t>(1, label_bytes);
  const size_t chunk = ((n + chunks - 1) / chunks + elem - 1) / elem * elem;  // whole voxels per member
  const bool run_length = (label_bytes == 1 || label_bytes == 2) && level <= 1;
  std::vector<std::vector<uint8_t>> members(chunks);
  std::vector<Status> errors(chunks);
  ParallelFor(pool, static_cast<int64_t>(chunks), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const size_t begin = std::min(n, static_cast<size_t>(i) * chunk), len = std::min(chunk, n - begin);
      Result<std::vector<uint8_t>> m = run_length ? GzipRunLength(in + begin, len, label_bytes)
                                                  : GzipCompress(in + begin, len, level);
      if (run_length && m.ok() && m->empty()) m = GzipCompress(in + begin, len, level);
      if (m.ok()) {
        members[static_cast<size_t>(i)] = std::move(m).value();
      } else {
        errors[static_cast<size_t>(i)] = m.status();
      }
    }
  });
  for (const Status& s : errors) ITKIT_RETURN_IF_ERROR(s);
  return members;
}

}  // namespace itkit::pipeline
