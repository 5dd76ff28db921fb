// In-memory volumes of the pipeline, free of ITK: geometry (ITK conventions: x,y,z
// axes, LPS physical space, direction columns = axes) plus a channel-major buffer.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "itkit/status.h"

namespace itkit::pipeline {

struct Geometry {
  std::array<int64_t, 3> size{0, 0, 0};  // x, y, z
  std::array<double, 3> spacing{1, 1, 1};
  std::array<double, 3> origin{0, 0, 0};
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major; column j = axis j
  int64_t voxels() const { return size[0] * size[1] * size[2]; }
  double dir(int row, int col) const { return direction[static_cast<size_t>(row * 3 + col)]; }
};

// Zeroed anonymous memory; nullptr when the mapping fails.
void* AllocateMapped(size_t bytes);
void FreeMapped(void* p, size_t bytes);

// Faults in fresh memory on a helper thread while the caller goes on (joined on
// destruction). A serial stage such as inflating a .nii.gz otherwise spends a quarter
// of its time on the kernel zeroing the pages it writes, while the other core idles.
// The caller may write the memory meanwhile: pages are only made present
// (MADV_POPULATE_WRITE), never written. Does nothing where that is unsupported.
// Declare it after the buffers it works on, so that it is joined before they go.
class Prefaulter {
 public:
  Prefaulter() = default;
  ~Prefaulter();
  Prefaulter(const Prefaulter&) = delete;
  Prefaulter& operator=(const Prefaulter&) = delete;
  // Starts the helper on the given ranges, in order.
  void Start(std::vector<std::pair<void*, size_t>> ranges);

 private:
  std::unique_ptr<std::thread> thread_;
};

// An owning (or shared) typed buffer. Allocation failures come back as values: a
// client-sized image must never take the process down with std::bad_alloc.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  // Large buffers are fresh anonymous mappings (zero pages, handed out lazily by the
  // kernel, so `zeroed` is free) returned to the system as soon as they are freed;
  // small ones come from malloc/calloc. (Transparent huge pages were measured: the
  // compaction they trigger costs as much as the TLB misses they save.)
  static Result<Buffer> Allocate(int64_t count, bool zeroed = false) {
    Buffer b;
    if (count < 0 || static_cast<uint64_t>(count) > (uint64_t{1} << 62) / sizeof(T))
      return ResourceExhausted("buffer of ", count, " elements is too large");
    const size_t bytes = static_cast<size_t>(count == 0 ? 1 : count) * sizeof(T);
    void* p = nullptr;
    if (bytes >= (size_t{16} << 20)) {
      p = AllocateMapped(bytes);
      if (p == nullptr) return OutOfMemory("could not allocate ", bytes >> 20, " MiB");
      b.owner_ = std::shared_ptr<void>(p, [bytes](void* q) { FreeMapped(q, bytes); });
    } else {
      p = zeroed ? std::calloc(bytes, 1) : std::malloc(bytes);
      if (p == nullptr) return OutOfMemory("could not allocate ", bytes >> 20, " MiB");
      b.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    }
    b.data_ = static_cast<T*>(p);
    b.count_ = count;
    return b;
  }
  // Shares memory someone else owns (e.g. an ITK image kept alive by `owner`).
  static Buffer Wrap(std::shared_ptr<void> owner, T* data, int64_t count) {
    Buffer b;
    b.owner_ = std::move(owner);
    b.data_ = data;
    b.count_ = count;
    return b;
  }
  T* data() { return data_; }
  const std::shared_ptr<void>& owner() const { return owner_; }
  const T* data() const { return data_; }
  int64_t size() const { return count_; }
  bool empty() const { return data_ == nullptr; }
  void Reset() { owner_.reset(); data_ = nullptr; count_ = 0; }

 private:
  std::shared_ptr<void> owner_;
  T* data_ = nullptr;
  int64_t count_ = 0;
};

// Voxel types a volume may keep as read (so a 16-bit CT is not widened to float
// before the pass that reorients and normalises it anyway).
enum class PixelType : uint8_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kF64 };

// Calls f(T{}) with the C++ type of `t`.
template <typename F>
decltype(auto) VisitPixelType(PixelType t, F&& f) {
  switch (t) {
    case PixelType::kU8: return f(uint8_t{});
    case PixelType::kI8: return f(int8_t{});
    case PixelType::kU16: return f(uint16_t{});
    case PixelType::kI16: return f(int16_t{});
    case PixelType::kU32: return f(uint32_t{});
    case PixelType::kI32: return f(int32_t{});
    case PixelType::kF64: return f(double{});
    case PixelType::kF32: break;
  }
  return f(float{});
}

// channels × z × y × x voxels (x fastest), the layout of an ITK image per channel.
struct Volume {
  Geometry geometry;
  int channels = 1;
  PixelType type = PixelType::kF32;
  std::shared_ptr<void> owner;  // keeps `data` alive (an ITK image, a Buffer, ...)
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  void Reset() { owner.reset(); data = nullptr; }
  template <typename T>
  const T* channel(int c) const {
    return static_cast<const T*>(data) + static_cast<int64_t>(c) * geometry.voxels();
  }
};
}  // namespace itkit::pipeline
