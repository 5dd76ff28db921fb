// ONNX importer tests. Models are built here with a tiny protobuf writer, so each
// test states exactly the bytes it feeds (including the malformed ones).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "itkit/onnx_importer.h"
#include "itkit/op_table.h"

namespace itkit {
namespace {

namespace fs = std::filesystem;

// ---- protobuf writer -------------------------------------------------------

class Pb {
 public:
  Pb& Varint(uint32_t field, uint64_t v) {
    Key(field, 0);
    Raw(v);
    return *this;
  }
  Pb& Bytes(uint32_t field, std::string_view b) {
    Key(field, 2);
    Raw(b.size());
    s_.append(b);
    return *this;
  }
  Pb& Msg(uint32_t field, const Pb& m) { return Bytes(field, m.str()); }
  Pb& Float(uint32_t field, float v) {
    Key(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    s_.append(b, 4);
    return *this;
  }
  Pb& PackedVarints(uint32_t field, const std::vector<int64_t>& vs) {
    Pb inner;
    for (int64_t v : vs) inner.Raw(static_cast<uint64_t>(v));
    return Bytes(field, inner.str());
  }
  const std::string& str() const { return s_; }

 private:
  void Key(uint32_t field, int wire) { Raw(uint64_t{field} << 3 | static_cast<uint64_t>(wire)); }
  void Raw(uint64_t v) {
    while (v >= 0x80) {
      s_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    s_.push_back(static_cast<char>(v));
  }
  std::string s_;
};

// ONNX enum values and field numbers (onnx.proto).
constexpr int kFloat = 1, kUint8 = 2, kInt32 = 6, kInt64 = 7, kBool = 9, kFloat16 = 10, kDouble = 11;

std::string RawFloats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

Pb TensorPb(const std::string& name, const std::vector<int64_t>& dims, int dtype, const std::string& raw) {
  Pb t;
  for (int64_t d : dims) t.Varint(1, static_cast<uint64_t>(d));
  t.Varint(2, static_cast<uint64_t>(dtype)).Bytes(8, name).Bytes(9, raw);
  return t;
}

Pb ValueInfoPb(const std::string& name, int elem_type, const std::vector<int64_t>& dims) {
  Pb shape;
  for (int64_t d : dims) shape.Msg(1, Pb().Varint(1, static_cast<uint64_t>(d)));
  Pb tensor_type;
  tensor_type.Varint(1, static_cast<uint64_t>(elem_type)).Msg(2, shape);
  return Pb().Bytes(1, name).Msg(2, Pb().Msg(1, tensor_type));
}

Pb AttrInt(const std::string& name, int64_t v) { return Pb().Bytes(1, name).Varint(20, 2).Varint(3, static_cast<uint64_t>(v)); }
Pb AttrInts(const std::string& name, const std::vector<int64_t>& v) {
  return Pb().Bytes(1, name).Varint(20, 7).PackedVarints(8, v);
}
Pb AttrFloat(const std::string& name, float v) { return Pb().Bytes(1, name).Varint(20, 1).Float(2, v); }
Pb AttrTensor(const std::string& name, const Pb& t) { return Pb().Bytes(1, name).Varint(20, 4).Msg(5, t); }

Pb NodePb(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
        const std::vector<Pb>& attrs = {}, const std::string& domain = "") {
  Pb n;
  for (const auto& s : in) n.Bytes(1, s);
  for (const auto& s : out) n.Bytes(2, s);
  n.Bytes(3, "n_" + (out.empty() ? op : out[0])).Bytes(4, op);
  if (!domain.empty()) n.Bytes(7, domain);
  for (const Pb& a : attrs) n.Msg(5, a);
  return n;
}

struct GraphSpec {
  std::vector<Pb> nodes, initializers, inputs, outputs;
};

Pb GraphPb(const GraphSpec& g) {
  Pb p;
  for (const Pb& n : g.nodes) p.Msg(1, n);
  p.Bytes(2, "test_graph");
  for (const Pb& t : g.initializers) p.Msg(5, t);
  for (const Pb& v : g.inputs) p.Msg(11, v);
  for (const Pb& v : g.outputs) p.Msg(12, v);
  return p;
}

std::string ModelBytes(const GraphSpec& g, int64_t opset = 17,
                  const std::vector<std::pair<std::string, int64_t>>& extra_opsets = {}) {
  Pb m;
  m.Varint(1, 8).Bytes(2, "itkit-test").Bytes(3, "1.2.3").Msg(7, GraphPb(g));
  m.Msg(8, Pb().Bytes(1, "").Varint(2, static_cast<uint64_t>(opset)));
  for (const auto& [d, v] : extra_opsets) m.Msg(8, Pb().Bytes(1, d).Varint(2, static_cast<uint64_t>(v)));
  return m.str();
}

// x[1,4] → Relu → y, with an unused weight initializer so tensors are exercised.
GraphSpec ReluGraph() {
  GraphSpec g;
  g.inputs = {ValueInfoPb("x", kFloat, {1, 4})};
  g.outputs = {ValueInfoPb("y", kFloat, {1, 4})};
  g.nodes = {NodePb("Relu", {"x"}, {"y"})};
  return g;
}

class OnnxImporter : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* op : {"Relu", "Add", "Cast"})
      if (!FindOpSchema("", op)) GTEST_SKIP() << op << " is not in the op table yet";
    dir_ = fs::temp_directory_path() / ("itkit_onnx_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string Write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
  fs::path dir_;
};

#define EXPECT_ERROR(result_expr, expected_code, fragment)                               \
  do {                                                                                   \
    const auto& r_ = (result_expr);                                                      \
    ASSERT_FALSE(r_.ok()) << "expected an error containing '" << (fragment) << "'";       \
    EXPECT_EQ(r_.status().code(), (expected_code)) << r_.status().ToString();            \
    EXPECT_NE(r_.status().message().find(fragment), std::string::npos) << r_.status().ToString(); \
  } while (0)

// ---- tests -----------------------------------------------------------------

TEST_F(OnnxImporter, LoadsSimpleModelWithMetadata) {
  GraphSpec g = ReluGraph();
  Pb m;
  m.Varint(1, 8).Bytes(2, "pytorch").Bytes(3, "2.1.0").Msg(7, GraphPb(g));
  m.Msg(8, Pb().Bytes(1, "").Varint(2, 17));
  m.Msg(14, Pb().Bytes(1, "labels").Bytes(2, R"(["background","liver"])"));
  m.Msg(14, Pb().Bytes(1, "spacing").Bytes(2, "[1.5,1.5,2.0]"));
  auto model = LoadOnnxModelFromBytes(m.str(), "");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(model->metadata.producer_name, "pytorch");
  EXPECT_EQ(model->metadata.producer_version, "2.1.0");
  EXPECT_EQ(model->metadata.ir_version, 8);
  EXPECT_EQ(model->metadata.Get("labels").value_or(""), R"(["background","liver"])");
  EXPECT_EQ(model->metadata.Get("spacing").value_or(""), "[1.5,1.5,2.0]");
  EXPECT_EQ(model->graph.onnx_opset(), 17);
  ASSERT_EQ(model->graph.inputs.size(), 1u);
  EXPECT_EQ(model->graph.inputs[0].dtype, DType::kF32);
  ASSERT_EQ(model->graph.inputs[0].dims.size(), 2u);
  EXPECT_EQ(model->graph.inputs[0].dims[1].value, 4);
  ASSERT_EQ(model->graph.nodes.size(), 1u);
  EXPECT_EQ(model->graph.nodes[0].op_type, "Relu");
}

TEST_F(OnnxImporter, SymbolicDimsAndInitializersExcludedFromInputs) {
  GraphSpec g;
  Pb shape = Pb().Msg(1, Pb().Bytes(2, "N")).Msg(1, Pb().Varint(1, 4)).Msg(1, Pb());
  g.inputs = {Pb().Bytes(1, "x").Msg(2, Pb().Msg(1, Pb().Varint(1, kFloat).Msg(2, shape)))};
  g.inputs.push_back(ValueInfoPb("b", kFloat, {4}));  // IR 3 style: initializer listed as input
  g.initializers = {TensorPb("b", {4}, kFloat, RawFloats({1, 2, 3, 4}))};
  g.outputs = {ValueInfoPb("y", kFloat, {})};
  g.nodes = {NodePb("Add", {"x", "b"}, {"y"})};
  auto model = LoadOnnxModelFromBytes(ModelBytes(g), "");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->graph.inputs.size(), 1u);
  const auto& dims = model->graph.inputs[0].dims;
  ASSERT_EQ(dims.size(), 3u);
  EXPECT_EQ(dims[0].symbol, "N");
  EXPECT_FALSE(dims[0].is_static());
  EXPECT_EQ(dims[1].value, 4);
  EXPECT_TRUE(dims[2].symbol.empty());
  EXPECT_FALSE(dims[2].is_static());
  ASSERT_TRUE(model->graph.initializers.count("b"));
  EXPECT_FLOAT_EQ(model->graph.initializers.at("b").data<float>()[3], 4.0f);
}

TEST_F(OnnxImporter, ConstantNodesBecomeInitializers) {
  GraphSpec g = ReluGraph();
  g.nodes.push_back(NodePb("Constant", {}, {"c1"}, {AttrInts("value_ints", {3, -1})}));
  g.nodes.push_back(NodePb("Constant", {}, {"c2"}, {AttrFloat("value_float", 2.5f)}));
  g.nodes.push_back(NodePb("Constant", {}, {"c3"}, {AttrTensor("value", TensorPb("", {2}, kFloat, RawFloats({7, 8})))}));
  g.nodes.push_back(NodePb("Add", {"c2", "c3"}, {"z"}));
  g.outputs.push_back(ValueInfoPb("z", kFloat, {2}));
  g.outputs.push_back(ValueInfoPb("c1", kInt64, {2}));
  auto model = LoadOnnxModelFromBytes(ModelBytes(g), "");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (const auto& n : model->graph.nodes) EXPECT_NE(n.op_type, "Constant");
  const auto& inits = model->graph.initializers;
  ASSERT_TRUE(inits.count("c1") && inits.count("c2") && inits.count("c3"));
  EXPECT_EQ(inits.at("c1").dtype(), DType::kI64);
  EXPECT_EQ(inits.at("c1").ToInt64Vector(), (std::vector<int64_t>{3, -1}));
  EXPECT_EQ(inits.at("c2").rank(), 0);
  EXPECT_FLOAT_EQ(inits.at("c2").data<float>()[0], 2.5f);
  EXPECT_FLOAT_EQ(inits.at("c3").data<float>()[1], 8.0f);
}

TEST_F(OnnxImporter, TypedDataFields) {
  GraphSpec g = ReluGraph();
  // FLOAT16, BOOL and UINT8 travel in int32_data (field 5); INT64 in int64_data (7).
  g.initializers.push_back(Pb().Varint(1, 2).Varint(2, kFloat16).Bytes(8, "h").PackedVarints(5, {0x3c00, 0xc000}));
  g.initializers.push_back(Pb().Varint(1, 3).Varint(2, kBool).Bytes(8, "b").PackedVarints(5, {0, 1, 5}));
  g.initializers.push_back(Pb().Varint(1, 2).Varint(2, kUint8).Bytes(8, "u").PackedVarints(5, {255, 7}));
  g.initializers.push_back(Pb().Varint(1, 2).Varint(2, kInt32).Bytes(8, "i").PackedVarints(5, {-5, 9}));
  g.initializers.push_back(Pb().Varint(1, 2).Varint(2, kInt64).Bytes(8, "l").PackedVarints(7, {-1, int64_t{1} << 40}));
  g.initializers.push_back(Pb().Varint(1, 2).Varint(2, kFloat).Bytes(8, "f").Float(4, 1.5f).Float(4, -2.0f));
  auto model = LoadOnnxModelFromBytes(ModelBytes(g), "");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const auto& in = model->graph.initializers;
  EXPECT_FLOAT_EQ(static_cast<float>(in.at("h").GetAsDouble(1)), -2.0f);
  EXPECT_EQ(in.at("b").ToInt64Vector(), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(in.at("u").ToInt64Vector(), (std::vector<int64_t>{255, 7}));
  EXPECT_EQ(in.at("i").ToInt64Vector(), (std::vector<int64_t>{-5, 9}));
  EXPECT_EQ(in.at("l").ToInt64Vector(), (std::vector<int64_t>{-1, int64_t{1} << 40}));
  EXPECT_FLOAT_EQ(in.at("f").data<float>()[1], -2.0f);
}

TEST_F(OnnxImporter, TruncatedFileNeverCrashes) {
  GraphSpec g = ReluGraph();
  g.initializers = {TensorPb("w", {16}, kFloat, RawFloats(std::vector<float>(16, 1.0f)))};
  const std::string bytes = ModelBytes(g);
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = LoadOnnxModelFromBytes(std::string_view(bytes).substr(0, n), "");
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty());
    }
  }
  // Cut in the middle of the weights: a clear error naming the file.
  const std::string path = Write("truncated.onnx", bytes.substr(0, bytes.size() - 40));
  auto r = LoadOnnxModel(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("corrupt protobuf"), std::string::npos) << r.status().ToString();
}

TEST_F(OnnxImporter, RandomBytesAreRejected) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 512, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    auto r = LoadOnnxModelFromBytes(bytes, "");
    ASSERT_FALSE(r.ok());
    EXPECT_FALSE(r.status().message().empty());
  }
  EXPECT_ERROR(LoadOnnxModelFromBytes("", ""), StatusCode::kInvalidArgument, "no graph");
}

TEST_F(OnnxImporter, AbsurdDims) {
  GraphSpec g = ReluGraph();
  g.initializers = {TensorPb("w", {int64_t{1} << 40, int64_t{1} << 40}, kFloat, RawFloats({1}))};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "overflows");
  // Empty, yet its strides would overflow (a fuzzer find; see tests/regression):
  // the core's CheckedElementCount refuses it before the importer's own check runs.
  g.initializers = {TensorPb("w", {0, int64_t{1} << 40, int64_t{1} << 40}, kFloat, "")};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "overflows");
  g.initializers = {TensorPb("w", {-2, 2}, kFloat, RawFloats({1, 2, 3, 4}))};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "negative");
  // Huge but not overflowing: refused by size, before any allocation.
  g.initializers = {TensorPb("w", {int64_t{1} << 30, 1024}, kFloat, RawFloats({1}))};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kResourceExhausted, "initializer 'w'");
  g.initializers = {TensorPb("w", {1 << 20}, kFloat, RawFloats({1}))};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "raw_data has 4 bytes");
  g = ReluGraph();
  g.inputs = {ValueInfoPb("x", kFloat, {1, -3})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "graph input 'x'");
  g.inputs = {ValueInfoPb("x", kFloat, {int64_t{1} << 62, 16})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "overflows");
  // Typed data: count must match the shape.
  g = ReluGraph();
  g.initializers = {Pb().Varint(1, 3).Varint(2, kInt64).Bytes(8, "l").PackedVarints(7, {1, 2})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "holds 2 values");
}

TEST_F(OnnxImporter, ExternalData) {
  GraphSpec g = ReluGraph();
  auto external = [](const std::string& location, const std::string& offset, const std::string& length) {
    Pb t;
    t.Varint(1, 2).Varint(2, kFloat).Bytes(8, "w");
    t.Msg(13, Pb().Bytes(1, "location").Bytes(2, location));
    if (!offset.empty()) t.Msg(13, Pb().Bytes(1, "offset").Bytes(2, offset));
    if (!length.empty()) t.Msg(13, Pb().Bytes(1, "length").Bytes(2, length));
    t.Varint(14, 1);
    return t;
  };
  Write("weights/w.bin", "pad!" + RawFloats({3.0f, 4.0f}));
  g.initializers = {external("weights/w.bin", "4", "8")};
  auto ok = LoadOnnxModel(Write("model.onnx", ModelBytes(g)));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_FLOAT_EQ(ok->graph.initializers.at("w").data<float>()[1], 4.0f);

  g.initializers = {external("../w.bin", "", "")};
  EXPECT_ERROR(LoadOnnxModel(Write("m1.onnx", ModelBytes(g))), StatusCode::kInvalidArgument, "escapes");
  g.initializers = {external("weights/../../w.bin", "", "")};
  EXPECT_ERROR(LoadOnnxModel(Write("m2.onnx", ModelBytes(g))), StatusCode::kInvalidArgument, "escapes");
  g.initializers = {external("/etc/passwd", "", "")};
  EXPECT_ERROR(LoadOnnxModel(Write("m3.onnx", ModelBytes(g))), StatusCode::kInvalidArgument, "relative");
  g.initializers = {external("weights/w.bin", "8", "")};  // 4 bytes left, 8 needed
  EXPECT_ERROR(LoadOnnxModel(Write("m4.onnx", ModelBytes(g))), StatusCode::kInvalidArgument, "has 12 bytes");
  g.initializers = {external("weights/w.bin", "0", "12")};
  EXPECT_ERROR(LoadOnnxModel(Write("m5.onnx", ModelBytes(g))), StatusCode::kInvalidArgument, "length 12");
  g.initializers = {external("missing.bin", "", "")};
  EXPECT_ERROR(LoadOnnxModel(Write("m6.onnx", ModelBytes(g))), StatusCode::kIoError, "missing.bin");
  g.initializers = {external("weights/w.bin", "4", "8")};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "base directory");
}

TEST_F(OnnxImporter, MissingInitializerAndCycle) {
  GraphSpec g = ReluGraph();
  g.nodes = {NodePb("Add", {"x", "W"}, {"y"})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "'W'");
  g.nodes = {NodePb("Relu", {"t2"}, {"t1"}), NodePb("Relu", {"t1"}, {"t2"}), NodePb("Add", {"x", "t2"}, {"y"})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "cycle");
  g.nodes = {NodePb("Relu", {"x"}, {"y"}), NodePb("Relu", {"x"}, {"y"})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "also produced");
  g.nodes = {NodePb("Relu", {"x"}, {"t"})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "never produced");
}

TEST_F(OnnxImporter, ListsEveryUnsupportedOp) {
  GraphSpec g = ReluGraph();
  g.nodes = {NodePb("Relu", {"x"}, {"a"}), NodePb("FancyOp", {"a"}, {"b"}), NodePb("FancyOp", {"b"}, {"c"}),
             NodePb("Gizmo", {"c"}, {"d"}, {}, "com.example"), NodePb("Relu", {"d"}, {"y"})};
  auto r = LoadOnnxModelFromBytes(ModelBytes(g, 17, {{"com.example", 1}}), "");
  EXPECT_ERROR(r, StatusCode::kUnsupported, "2 unsupported operators");
  EXPECT_NE(r.status().message().find("FancyOp (opset 17, 2 nodes"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("Gizmo (domain 'com.example' version 1"), std::string::npos);
  // A domain the model never imports is malformed, not merely unsupported.
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kInvalidArgument, "does not import");
  // Subgraph attributes: the op is listed as unsupported.
  g.nodes = {NodePb("If", {"x"}, {"y"}, {Pb().Bytes(1, "then_branch").Varint(20, 5).Msg(6, GraphPb(ReluGraph()))})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kUnsupported, "If (opset 17");
  // Opsets outside the supported range.
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(ReluGraph(), 18), ""), StatusCode::kUnsupported, "opset 18");
}

TEST_F(OnnxImporter, UnsupportedDataTypesNameTheTensor) {
  GraphSpec g = ReluGraph();
  g.initializers = {TensorPb("dbl", {1}, kDouble, std::string(8, '\0'))};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kUnsupported, "initializer 'dbl': data type DOUBLE");
  g = ReluGraph();
  g.inputs = {ValueInfoPb("x", kDouble, {1, 4})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kUnsupported, "graph input 'x'");
  g = ReluGraph();
  g.nodes = {NodePb("Relu", {"x"}, {"t"}), NodePb("Cast", {"t"}, {"y"}, {AttrInt("to", kDouble)})};
  EXPECT_ERROR(LoadOnnxModelFromBytes(ModelBytes(g), ""), StatusCode::kUnsupported, "(Cast): cast target");
  g.nodes = {NodePb("Relu", {"x"}, {"t"}), NodePb("Cast", {"t"}, {"y"}, {AttrInt("to", kFloat16)})};
  EXPECT_TRUE(LoadOnnxModelFromBytes(ModelBytes(g), "").ok());
}

TEST_F(OnnxImporter, LegacyBroadcastIsNormalised) {
  GraphSpec g;
  g.inputs = {ValueInfoPb("x", kFloat, {2, 3, 4, 5})};
  g.initializers = {TensorPb("b", {3}, kFloat, RawFloats({1, 2, 3}))};
  g.outputs = {ValueInfoPb("y", kFloat, {2, 3, 4, 5})};
  g.nodes = {NodePb("Add", {"x", "b"}, {"y"}, {AttrInt("broadcast", 1), AttrInt("axis", 1)})};
  auto model = LoadOnnxModelFromBytes(ModelBytes(g, 6), "");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Node& add = model->graph.nodes[0];
  EXPECT_TRUE(add.attrs.all().empty());
  EXPECT_EQ(model->graph.initializers.at(add.inputs[1]).shape(), (Shape{3, 1, 1}));
  // The same at opset 7 is left alone (numpy broadcasting; no such attributes).
  g.nodes = {NodePb("Add", {"x", "b"}, {"y"})};
  model = LoadOnnxModelFromBytes(ModelBytes(g, 7), "");
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->graph.nodes[0].inputs[1], "b");
}

TEST_F(OnnxImporter, FileErrors) {
  EXPECT_ERROR(LoadOnnxModel((dir_ / "nope.onnx").string()), StatusCode::kIoError, "nope.onnx");
  EXPECT_ERROR(LoadOnnxModel(dir_.string()), StatusCode::kInvalidArgument, "not a regular file");
  const std::string fifo = (dir_ / "fifo.onnx").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_ERROR(LoadOnnxModel(fifo), StatusCode::kInvalidArgument, "not a regular file");  // and no hang
  // A sparse file over protobuf's limit: refused up front, pointing at external data.
  const std::string big = (dir_ / "big.onnx").string();
  { std::ofstream(big, std::ios::binary) << "x"; }
  std::error_code ec;
  fs::resize_file(big, (uintmax_t{2} << 30) + 16, ec);
  if (!ec) {
    EXPECT_ERROR(LoadOnnxModel(big), StatusCode::kInvalidArgument, "external data");
  }
}

TEST_F(OnnxImporter, TensorFiles) {
  auto t = LoadOnnxTensorFromBytes(TensorPb("input_0", {2}, kFloat, RawFloats({1.5f, 2.5f})).str());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->name, "input_0");
  EXPECT_FLOAT_EQ(t->tensor.data<float>()[1], 2.5f);
  EXPECT_ERROR(LoadOnnxTensorFromBytes(TensorPb("d", {1}, kDouble, std::string(8, '\0')).str()),
               StatusCode::kUnsupported, "DOUBLE");
}

// Inputs the fuzzer once broke (or that stress a fixed corner) must keep failing cleanly.
TEST_F(OnnxImporter, FuzzRegressionFilesFailCleanly) {
  const fs::path dir = fs::path(__FILE__).parent_path().parent_path() / "regression" / "onnx_importer";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " not found";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() == ".md") continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto r = LoadOnnxModelFromBytes(bytes, "");
    EXPECT_FALSE(r.ok()) << e.path();
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty()) << e.path();
    }
    ++n;
  }
  RecordProperty("files", n);
}

}  // namespace
}  // namespace itkit
