// Shared by the elementwise kernel files (elementwise.cpp: unary, Clip, Cast, Dropout;
// elementwise_binary.cpp: broadcasting binary/variadic ops and Where).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/f16_adapter.h"
#include "cpu/nd_iter.h"

namespace itkit::cpu {

// Elements per parallel range: below this, waking threads costs more than it saves.
inline constexpr int64_t kElementwiseGrain = 1 << 15;

// Calls fn(T{}) for the C++ type of a numeric dtype (bool as uint8_t); false for
// dtypes without a CPU arithmetic type (f16, undefined).
template <typename Fn>
bool DispatchNumeric(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::kF32: fn(float{}); return true;
    case DType::kI64: fn(int64_t{}); return true;
    case DType::kI32: fn(int32_t{}); return true;
    case DType::kU8: fn(uint8_t{}); return true;
    case DType::kBool: fn(uint8_t{}); return true;
    default: return false;
  }
}

// The unsupported-dtype error of a CPU kernel.
inline Status UnsupportedDType(const NodeSignature& sig, DType dtype) {
  return Unsupported(sig.node->Describe(), ": dtype ", DTypeName(dtype), " is not supported by the CPU kernel");
}

void AppendElementwiseBinaryKernels(std::vector<CpuOpEntry>& table);  // elementwise_binary.cpp

}  // namespace itkit::cpu
