// TensorProto → itkit::Tensor: dtype mapping, raw/typed/external payloads, and the
// size checks that keep a corrupt header from allocating or reading out of bounds.
#pragma once

#include <string>

#include "itkit/tensor.h"
#include "onnx_proto.h"

namespace itkit::onnx_import {

// ONNX TensorProto.DataType → DType; Unsupported for valid ONNX types we do not
// compute with (DOUBLE, INT8, ...), InvalidArgument for values outside the enum.
Result<DType> DTypeFromOnnx(int64_t onnx_type);

// CheckedElementCount plus: the product of the non-zero dims must fit int64 too. An
// empty tensor passes CheckedElementCount whatever its other dims, but its strides
// (products of trailing dims) would overflow in every later stage.
Result<int64_t> CheckedShapeElementCount(const Shape& dims);

// Decodes the tensor's data. External data is resolved relative to `base_dir`
// (refused when `base_dir` is empty, i.e. for models loaded from memory).
// Errors do not name the tensor; callers add that context.
Result<Tensor> TensorFromProto(const onnx_proto::TensorP& t, const std::string& base_dir);

}  // namespace itkit::onnx_import
