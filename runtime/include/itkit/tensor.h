// A dense, row-major tensor: dtype + shape + a (possibly shared, possibly borrowed)
// buffer. Host or device memory; kernels only touch the memory of their own device.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "itkit/dtype.h"
#include "itkit/status.h"

namespace itkit {

inline constexpr int kMaxRank = 8;
// Refuse single tensors larger than this: a corrupt header must not exhaust memory.
inline constexpr int64_t kMaxTensorBytes = int64_t{64} << 30;

using Shape = std::vector<int64_t>;

enum class DeviceKind : uint8_t { kCpu = 0, kCuda };
std::string_view DeviceName(DeviceKind device);

// Element count, or an error on negative dims, rank > kMaxRank or overflow.
Result<int64_t> CheckedElementCount(const Shape& shape);
int64_t ElementCount(const Shape& shape);  // caller guarantees validity
std::string ShapeToString(const Shape& shape);
// Row-major strides in elements.
std::vector<int64_t> ContiguousStrides(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // Fresh zero-initialised host memory, 64-byte aligned.
  static Result<Tensor> Allocate(DType dtype, Shape shape);
  // Non-owning view over memory someone else keeps alive.
  static Tensor View(DType dtype, Shape shape, void* data, DeviceKind device = DeviceKind::kCpu);
  // Shares ownership of `owner` (e.g. a device allocation).
  static Tensor Wrap(DType dtype, Shape shape, std::shared_ptr<void> owner, void* data,
                     DeviceKind device);
  // Host tensor holding a copy of `values`.
  template <typename T>
  static Result<Tensor> FromVector(const std::vector<T>& values, Shape shape);

  bool defined() const { return dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int axis) const { return shape_[static_cast<size_t>(axis)]; }
  int64_t size() const { return ElementCount(shape_); }
  size_t bytes() const { return static_cast<size_t>(size()) * DTypeSize(dtype_); }
  DeviceKind device() const { return device_; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }

  // Whether this is the only Tensor sharing its memory (false for views).
  bool sole_owner() const { return owner_ != nullptr && owner_.use_count() == 1; }
  // Same memory, new shape (element count must match; checked by the caller).
  Tensor Reshaped(Shape shape) const;
  // Deep copy into fresh host memory (host tensors only).
  Result<Tensor> Clone() const;
  // Reads element i as double / int64 whatever the dtype (host only; for small tensors).
  double GetAsDouble(int64_t i) const;
  int64_t GetAsInt64(int64_t i) const;
  std::vector<int64_t> ToInt64Vector() const;  // host int/float tensor → values

 private:
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  DeviceKind device_ = DeviceKind::kCpu;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

template <typename T>
Result<Tensor> Tensor::FromVector(const std::vector<T>& values, Shape shape) {
  auto count = CheckedElementCount(shape);
  if (!count.ok()) return count.status();
  if (*count != static_cast<int64_t>(values.size()))
    return InvalidArgument("FromVector: ", values.size(), " values for shape ", ShapeToString(shape));
  auto t = Allocate(DTypeOf<T>::value, std::move(shape));
  if (!t.ok()) return t.status();
  T* out = t->template data<T>();
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return t;
}

}  // namespace itkit
