// Old training switches: `is_test` (opset < 7) and BatchNormalization's `spatial`
// (opset < 9). Inference semantics are the modern default; anything else is training
// or per-activation statistics, which the runtime does not do.
#include "ops/normalize.h"

namespace itkit::onnx_import {

Status NormalizeIsTest(Node& node, NormalizeContext& /*ctx*/) {
  if (node.attrs.Has("is_test")) {
    if (node.attrs.GetInt("is_test", 1) == 0)
      return Unsupported(node.Describe(), ": training mode (is_test=0) is not supported");
    node.attrs.Erase("is_test");
  }
  if (node.op_type == "BatchNormalization" && node.attrs.Has("spatial")) {
    if (node.attrs.GetInt("spatial", 1) != 1)
      return Unsupported(node.Describe(), ": spatial=0 (per-activation statistics) is not supported");
    node.attrs.Erase("spatial");
  }
  return Status::Ok();
}

}  // namespace itkit::onnx_import
