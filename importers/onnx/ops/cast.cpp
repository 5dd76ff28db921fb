// Cast's `to` names an ONNX data type; a target we do not compute with is reported
// at import (as Unsupported) rather than when the plan is built. The attribute keeps
// its ONNX enum value: the IR uses ONNX semantics.
#include "ops/normalize.h"
#include "tensor_proto.h"

namespace itkit::onnx_import {

Status NormalizeCast(Node& node, NormalizeContext& /*ctx*/) {
  auto to = node.attrs.RequireInt("to");
  if (!to.ok()) return to.status().WithContext(node.Describe());
  Result<DType> dtype = DTypeFromOnnx(*to);
  if (!dtype.ok()) return dtype.status().WithContext(node.Describe() + ": cast target");
  return Status::Ok();
}

}  // namespace itkit::onnx_import
