// Element types the runtime computes with. Anything else in a model is rejected by
// the importer with a clear "unsupported dtype" error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace itkit {

enum class DType : uint8_t { kUndefined = 0, kF32, kF16, kI64, kI32, kU8, kBool };

size_t DTypeSize(DType dtype);
std::string_view DTypeName(DType dtype);
bool IsFloat(DType dtype);
// ONNX TensorProto.DataType codes (Cast's `to`, tensor protos) of the dtypes above;
// kUndefined for any other code, 0 for kUndefined. The one copy of this mapping.
DType DTypeFromOnnxCode(int64_t code);
int64_t OnnxCodeOf(DType dtype);

// IEEE binary16 <-> binary32, round-to-nearest-even; portable (no _Float16 needed).
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::kU8; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::kBool; };

}  // namespace itkit
