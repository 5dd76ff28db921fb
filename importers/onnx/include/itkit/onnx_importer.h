// ONNX → ITKIT graph IR. Reads ONNX files as torch exports them (ai.onnx opsets
// 11–17; older opsets down to 6 are accepted with the rewrites listed in
// importers/onnx/ops/normalize.h), converts Constant nodes to initializers, checks
// every op against the runtime's op table and returns a validated, topologically
// sorted Model. Never throws; every failure is a Status naming the file, tensor,
// node or field at fault. Status code kUnsupported means "valid ONNX that the runtime
// cannot run" (op, data type, attribute kind, opset); anything malformed is
// kInvalidArgument (kIoError for unreadable files).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "itkit/graph.h"
#include "itkit/status.h"
#include "itkit/tensor.h"

namespace itkit {

inline constexpr int64_t kMinOnnxOpset = 6;
inline constexpr int64_t kMaxOnnxOpset = 17;

// External data files are resolved relative to the model's folder.
Result<Model> LoadOnnxModel(const std::string& path);
// `base_dir_for_external_data` may be empty: external data is then refused.
Result<Model> LoadOnnxModelFromBytes(std::string_view bytes, const std::string& base_dir_for_external_data);

// A serialized TensorProto, e.g. the input_0.pb/output_0.pb of ONNX test cases.
struct OnnxTensor {
  std::string name;
  Tensor tensor;
};
Result<OnnxTensor> LoadOnnxTensor(const std::string& path);
Result<OnnxTensor> LoadOnnxTensorFromBytes(std::string_view bytes);

}  // namespace itkit
