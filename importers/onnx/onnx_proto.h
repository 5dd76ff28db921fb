// The subset of the ONNX protobuf schema (onnx.proto, IR version ≤ 8) the importer
// reads, as plain structs of views into the model buffer. Field numbers are from
// onnx/onnx.proto. Repeated occurrences of a singular message merge, as in protobuf.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "itkit/status.h"

namespace itkit::onnx_proto {

// TensorProto.DataType values.
enum OnnxDataType : int32_t {
  kOnnxUndefined = 0, kOnnxFloat = 1, kOnnxUint8 = 2, kOnnxInt8 = 3, kOnnxUint16 = 4,
  kOnnxInt16 = 5, kOnnxInt32 = 6, kOnnxInt64 = 7, kOnnxString = 8, kOnnxBool = 9,
  kOnnxFloat16 = 10, kOnnxDouble = 11, kOnnxUint32 = 12, kOnnxUint64 = 13,
  kOnnxComplex64 = 14, kOnnxComplex128 = 15, kOnnxBfloat16 = 16,
};
std::string_view OnnxDataTypeName(int64_t type);

using StringPair = std::pair<std::string_view, std::string_view>;

struct TensorP {
  std::string_view message;  // the whole TensorProto, re-read when decoding typed data
  std::string_view name;
  std::vector<int64_t> dims;
  int32_t data_type = kOnnxUndefined;
  bool has_raw_data = false;
  std::string_view raw_data;
  // Element counts of the typed payload fields (decoded later, into the tensor).
  size_t n_float = 0, n_int32 = 0, n_int64 = 0, n_other = 0;  // other: string/double/uint64
  bool has_segment = false;
  int64_t data_location = 0;  // 1 = EXTERNAL
  std::vector<StringPair> external_data;
};

struct DimP {
  bool has_value = false;
  int64_t value = 0;
  std::string_view param;
};

struct ValueInfoP {
  std::string_view name;
  enum class TypeKind { kNone, kTensor, kOther } kind = TypeKind::kNone;
  std::string_view other_kind;  // "sequence", "map", ... for error messages
  int32_t elem_type = kOnnxUndefined;
  bool has_shape = false;
  std::vector<DimP> dims;
};

struct AttributeP {
  std::string_view name;
  int64_t type = 0;  // AttributeProto.AttributeType
  std::string_view ref_attr_name;
  bool has_f = false, has_i = false, has_s = false, has_t = false;
  float f = 0.0f;
  int64_t i = 0;
  std::string_view s;
  TensorP t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string_view> strings;
  size_t n_graphs = 0, n_tensors = 0, n_sparse = 0, n_type_protos = 0;  // counted, not parsed
};

// AttributeProto.AttributeType values.
enum OnnxAttrType : int64_t {
  kAttrUndefined = 0, kAttrFloat = 1, kAttrInt = 2, kAttrString = 3, kAttrTensor = 4,
  kAttrGraph = 5, kAttrFloats = 6, kAttrInts = 7, kAttrStrings = 8, kAttrTensors = 9,
  kAttrGraphs = 10, kAttrSparseTensor = 11, kAttrSparseTensors = 12, kAttrTypeProto = 13,
  kAttrTypeProtos = 14,
};

struct NodeP {
  std::vector<std::string_view> inputs, outputs;
  std::string_view name, op_type, domain;
  std::vector<AttributeP> attributes;
};

struct GraphP {
  std::string_view name;
  std::vector<NodeP> nodes;
  std::vector<TensorP> initializers;
  std::vector<ValueInfoP> inputs, outputs, value_info;
  size_t n_sparse_initializers = 0;
};

struct ModelP {
  int64_t ir_version = 0;
  std::vector<std::pair<std::string_view, int64_t>> opsets;  // domain, version
  std::string_view producer_name, producer_version;
  bool has_graph = false;
  GraphP graph;
  std::vector<StringPair> metadata;
  size_t n_functions = 0, n_training_info = 0;
};

Status ParseModel(std::string_view bytes, ModelP& model);
Status ParseTensor(std::string_view bytes, size_t base_offset, TensorP& tensor);

}  // namespace itkit::onnx_proto
