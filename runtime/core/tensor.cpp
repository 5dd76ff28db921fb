#include "itkit/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace itkit {

std::string_view DeviceName(DeviceKind device) {
  return device == DeviceKind::kCuda ? "cuda" : "cpu";
}

Result<int64_t> CheckedElementCount(const Shape& shape) {
  if (shape.size() > static_cast<size_t>(kMaxRank))
    return InvalidArgument("rank ", shape.size(), " exceeds the maximum of ", kMaxRank);
  // The product of the non-zero dims must fit too: strides and broadcasting of an
  // empty tensor such as [0, 2^40, 2^40] are computed from them.
  int64_t nonzero_product = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument("negative dimension in shape ", ShapeToString(shape));
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero_product > std::numeric_limits<int64_t>::max() / d)
      return InvalidArgument("element count of shape ", ShapeToString(shape), " overflows");
    nonzero_product *= d;
  }
  return empty ? 0 : nonzero_product;
}

int64_t ElementCount(const Shape& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

std::string ShapeToString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::vector<int64_t> ContiguousStrides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i)
    strides[static_cast<size_t>(i)] = strides[static_cast<size_t>(i) + 1] * shape[static_cast<size_t>(i) + 1];
  return strides;
}

Result<Tensor> Tensor::Allocate(DType dtype, Shape shape) {
  if (dtype == DType::kUndefined) return InvalidArgument("cannot allocate a tensor of undefined dtype");
  auto count = CheckedElementCount(shape);
  if (!count.ok()) return count.status();
  const int64_t elem = static_cast<int64_t>(DTypeSize(dtype));
  if (*count > kMaxTensorBytes / elem)
    return ResourceExhausted("tensor of shape ", ShapeToString(shape), " and dtype ", DTypeName(dtype),
                             " exceeds the ", kMaxTensorBytes >> 30, " GiB limit");
  const size_t bytes = static_cast<size_t>(*count * elem);
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  if (rounded && !data) return OutOfMemory("allocating ", bytes, " bytes for shape ", ShapeToString(shape));
  if (rounded) std::memset(data, 0, rounded);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.owner_ = std::shared_ptr<void>(data, [](void* p) { std::free(p); });
  t.data_ = data;
  return t;
}

Tensor Tensor::View(DType dtype, Shape shape, void* data, DeviceKind device) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.data_ = data;
  return t;
}

Tensor Tensor::Wrap(DType dtype, Shape shape, std::shared_ptr<void> owner, void* data, DeviceKind device) {
  Tensor t = View(dtype, std::move(shape), data, device);
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Result<Tensor> Tensor::Clone() const {
  if (device_ != DeviceKind::kCpu) return Internal("Clone of a device tensor");
  auto t = Allocate(dtype_, shape_);
  if (!t.ok()) return t.status();
  if (bytes()) std::memcpy(t->raw(), data_, bytes());
  return t;
}

double Tensor::GetAsDouble(int64_t i) const {
  switch (dtype_) {
    case DType::kF32: return data<float>()[i];
    case DType::kF16: return HalfToFloat(data<uint16_t>()[i]);
    case DType::kI64: return static_cast<double>(data<int64_t>()[i]);
    case DType::kI32: return data<int32_t>()[i];
    case DType::kU8: return data<uint8_t>()[i];
    case DType::kBool: return data<uint8_t>()[i] ? 1.0 : 0.0;
    case DType::kUndefined: return 0.0;
  }
  return 0.0;
}

int64_t Tensor::GetAsInt64(int64_t i) const {
  switch (dtype_) {
    case DType::kI64: return data<int64_t>()[i];
    case DType::kI32: return data<int32_t>()[i];
    case DType::kU8: return data<uint8_t>()[i];
    case DType::kBool: return data<uint8_t>()[i] ? 1 : 0;
    default: {
      const double v = GetAsDouble(i);
      if (!(v > -9.2e18 && v < 9.2e18)) return v > 0 ? std::numeric_limits<int64_t>::max()
                                                      : std::numeric_limits<int64_t>::min();
      return static_cast<int64_t>(v);
    }
  }
}

std::vector<int64_t> Tensor::ToInt64Vector() const {
  std::vector<int64_t> out(static_cast<size_t>(size()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = GetAsInt64(static_cast<int64_t>(i));
  return out;
}

}  // namespace itkit
