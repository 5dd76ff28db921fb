#include "itkit/onnx_importer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <set>

#include "itkit/op_table.h"
#include "onnx_proto.h"
#include "ops/normalize.h"
#include "tensor_proto.h"

namespace itkit {
namespace {

using namespace onnx_proto;
using onnx_import::DTypeFromOnnx;
using onnx_import::TensorFromProto;

// Protobuf messages are limited to 2 GiB; larger models must keep weights outside.
constexpr int64_t kMaxProtobufBytes = std::numeric_limits<int32_t>::max();

Status TooLarge(int64_t size) {
  return InvalidArgument("the file is ", size,
                         " bytes, over protobuf's 2 GiB message limit; save the weights as external data "
                         "(torch.onnx.export(..., external_data=True) or onnx.save_model(..., "
                         "save_as_external_data=True))");
}

Result<std::string> ReadWholeFile(const std::string& path) {
  // O_NONBLOCK: a FIFO must not hang the open; it is refused as not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IoError("cannot open '", path, "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return IoError("cannot stat '", path, "': ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("'", path, "' is not a regular file");
  if (st.st_size > kMaxProtobufBytes) return TooLarge(st.st_size).WithContext(path);
  std::string bytes;
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("reading '", path, "': ", std::strerror(errno));
    if (n == 0) break;  // shrank while reading: parse what is there
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

std::string Str(std::string_view s) { return std::string(s); }

Result<ValueInfo> ConvertValueInfo(const ValueInfoP& v, const char* what) {
  ValueInfo out;
  out.name = Str(v.name);
  const std::string label = StrCat(what, " '", out.name, "'");
  if (out.name.empty()) return InvalidArgument(what, " with an empty name");
  if (v.kind == ValueInfoP::TypeKind::kOther)
    return Unsupported(label, " is a ", v.other_kind, "; only tensors are supported");
  if (v.kind == ValueInfoP::TypeKind::kTensor && v.elem_type != kOnnxUndefined) {
    Result<DType> dtype = DTypeFromOnnx(v.elem_type);
    if (!dtype.ok()) return dtype.status().WithContext(label);
    out.dtype = *dtype;
  }
  out.has_shape = v.has_shape;
  if (v.dims.size() > static_cast<size_t>(kMaxRank))
    return Unsupported(label, ": rank ", v.dims.size(), " exceeds the runtime's maximum of ", kMaxRank);
  Shape probe;  // symbolic dims as 1, to check rank and overflow
  for (size_t d = 0; d < v.dims.size(); ++d) {
    Dim dim;
    if (v.dims[d].has_value) {
      if (v.dims[d].value < 0) return InvalidArgument(label, ": dimension ", d, " is ", v.dims[d].value);
      dim.value = v.dims[d].value;
    } else {
      dim.symbol = Str(v.dims[d].param);
    }
    probe.push_back(dim.is_static() ? dim.value : 1);
    out.dims.push_back(std::move(dim));
  }
  Result<int64_t> count = onnx_import::CheckedShapeElementCount(probe);
  if (!count.ok()) return count.status().WithContext(label);
  return out;
}

Result<Attribute> ConvertAttribute(const AttributeP& a, const std::string& base_dir) {
  if (!a.ref_attr_name.empty()) return Unsupported("refers to a function attribute ('", a.ref_attr_name, "')");
  int64_t type = a.type;
  if (type == kAttrUndefined) {  // very old exporters left the type out
    type = a.has_t ? kAttrTensor : a.has_s ? kAttrString : a.has_f ? kAttrFloat : a.has_i ? kAttrInt
         : !a.floats.empty() ? kAttrFloats : !a.ints.empty() ? kAttrInts : !a.strings.empty() ? kAttrStrings
         : a.n_graphs ? kAttrGraph : kAttrUndefined;
    if (type == kAttrUndefined) return InvalidArgument("has neither a type nor a value");
  }
  Attribute out;
  switch (type) {
    case kAttrFloat: out.kind = Attribute::Kind::kFloat; out.f = a.f; break;
    case kAttrInt: out.kind = Attribute::Kind::kInt; out.i = a.i; break;
    case kAttrString: out.kind = Attribute::Kind::kString; out.s = Str(a.s); break;
    case kAttrFloats: out.kind = Attribute::Kind::kFloats; out.floats = a.floats; break;
    case kAttrInts: out.kind = Attribute::Kind::kInts; out.ints = a.ints; break;
    case kAttrStrings:
      out.kind = Attribute::Kind::kStrings;
      for (std::string_view s : a.strings) out.strings.push_back(Str(s));
      break;
    case kAttrTensor: {
      if (!a.has_t) return InvalidArgument("is a TENSOR attribute without a tensor");
      out.kind = Attribute::Kind::kTensor;
      ITKIT_ASSIGN_OR_RETURN(out.t, TensorFromProto(a.t, base_dir));
      break;
    }
    case kAttrGraph: case kAttrGraphs: return Unsupported("subgraph (GRAPH) attributes are not supported");
    case kAttrTensors: return Unsupported("TENSORS attributes are not supported");
    case kAttrSparseTensor: case kAttrSparseTensors: return Unsupported("sparse tensor attributes are not supported");
    case kAttrTypeProto: case kAttrTypeProtos: return Unsupported("TYPE_PROTO attributes are not supported");
    default: return InvalidArgument("has unknown attribute type ", type);
  }
  return out;
}

// Constant nodes become initializers: one fewer op for every later stage.
Status ConstantToInitializer(const Node& node, Graph& graph) {
  if (node.outputs.size() != 1 || node.outputs[0].empty() || !node.inputs.empty())
    return InvalidArgument(node.Describe(), ": a Constant needs no inputs and exactly one output");
  if (node.attrs.all().size() != 1)
    return InvalidArgument(node.Describe(), ": a Constant needs exactly one value attribute");
  const auto& [name, a] = *node.attrs.all().begin();
  using K = Attribute::Kind;
  Result<Tensor> value = InvalidArgument("");
  if (name == "value" && a.kind == K::kTensor) value = a.t;
  else if (name == "value_float" && a.kind == K::kFloat) value = Tensor::FromVector<float>({a.f}, {});
  else if (name == "value_floats" && a.kind == K::kFloats)
    value = Tensor::FromVector<float>(a.floats, {static_cast<int64_t>(a.floats.size())});
  else if (name == "value_int" && a.kind == K::kInt) value = Tensor::FromVector<int64_t>({a.i}, {});
  else if (name == "value_ints" && a.kind == K::kInts)
    value = Tensor::FromVector<int64_t>(a.ints, {static_cast<int64_t>(a.ints.size())});
  else if (name == "value_string" || name == "value_strings")
    return Unsupported(node.Describe(), ": string constants are not supported");
  else
    return InvalidArgument(node.Describe(), ": unexpected Constant attribute '", name, "'");
  if (!value.ok()) return value.status().WithContext(node.Describe());
  if (graph.FindInput(node.outputs[0]))
    return InvalidArgument(node.Describe(), ": output '", node.outputs[0], "' overwrites a graph input");
  if (!graph.initializers.emplace(node.outputs[0], std::move(value).value()).second)
    return InvalidArgument(node.Describe(), ": output '", node.outputs[0], "' is already an initializer");
  return Status::Ok();
}

bool HasGraphAttribute(const NodeP& n) {
  for (const AttributeP& a : n.attributes)
    if (a.n_graphs || a.type == kAttrGraph || a.type == kAttrGraphs) return true;
  return false;
}

// Constant is handled here (it becomes an initializer); everything else is the op table's.
bool OpIsSupported(std::string_view domain, std::string_view op_type) {
  return FindOpSchema(domain, op_type) || (IsOnnxDomain(domain) && op_type == "Constant");
}

// One error listing every unsupported op, so a user sees the whole gap at once.
Status CheckOps(const GraphP& g, const std::map<std::string, int64_t>& opsets, int64_t onnx_opset) {
  struct Missing {
    size_t count = 0;
    std::string first_node, note;
  };
  std::map<std::pair<std::string, std::string>, Missing> missing;  // (domain, op)
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const NodeP& n = g.nodes[i];
    if (n.op_type.empty()) return InvalidArgument("graph node ", i, " has no op_type");
    // Every ONNX op yields something (only RNN-like ops make all outputs optional);
    // later stages rely on a node having at least one output.
    bool has_output = false;
    for (std::string_view out : n.outputs) has_output = has_output || !out.empty();
    if (!has_output) return InvalidArgument("graph node ", i, " (", n.op_type, ") has no output");
    const bool onnx = IsOnnxDomain(n.domain);
    int64_t version = onnx ? onnx_opset : 0;
    if (!onnx) {
      auto it = opsets.find(Str(n.domain));
      if (it == opsets.end())
        return InvalidArgument("graph node ", i, " (", n.op_type, ") uses domain '", n.domain,
                               "', which the model does not import (opset_import)");
      version = it->second;
    }
    const bool subgraph = HasGraphAttribute(n);
    if (!subgraph && OpIsSupported(n.domain, n.op_type)) continue;
    Missing& m = missing[{onnx ? "" : Str(n.domain), Str(n.op_type)}];
    if (m.count++ == 0) {
      m.first_node = n.name.empty() ? StrCat("#", i) : StrCat("'", n.name, "'");
      m.note = onnx ? StrCat("opset ", version) : StrCat("domain '", n.domain, "' version ", version);
      if (!onnx && n.domain != kItkitDomain) m.note += ", a domain the runtime does not know";
      if (subgraph) m.note += ", has a subgraph attribute";
    }
  }
  if (missing.empty()) return Status::Ok();
  std::string list;
  for (const auto& [key, m] : missing) {
    if (!list.empty()) list += "; ";
    list += StrCat(key.second, " (", m.note, ", ", m.count, m.count == 1 ? " node: " : " nodes, first: ",
                   m.first_node, ")");
  }
  return Unsupported("the model uses ", missing.size(), " unsupported operator", missing.size() == 1 ? "" : "s",
                     ": ", list);
}

Result<std::map<std::string, int64_t>> ConvertOpsets(const ModelP& m) {
  std::map<std::string, int64_t> opsets;
  for (const auto& [domain_view, version] : m.opsets) {
    std::string domain = Str(domain_view);
    if (domain == "ai.onnx") domain = "";
    if (version <= 0) return InvalidArgument("opset_import of domain '", domain, "' has version ", version);
    if (!opsets.emplace(domain, version).second)
      return InvalidArgument("opset_import lists domain '", domain, "' twice");
  }
  return opsets;
}

Status ImportGraph(const ModelP& m, const std::string& base_dir, Model& model) {
  const GraphP& g = m.graph;
  Graph& graph = model.graph;
  graph.name = Str(g.name);
  ITKIT_ASSIGN_OR_RETURN(graph.opsets, ConvertOpsets(m));
  const int64_t onnx_opset = graph.onnx_opset();
  bool uses_onnx = false;
  for (const NodeP& n : g.nodes) uses_onnx = uses_onnx || IsOnnxDomain(n.domain);
  if (uses_onnx && onnx_opset == 0) return InvalidArgument("the model has no opset_import for the ai.onnx domain");
  if (uses_onnx && (onnx_opset < kMinOnnxOpset || onnx_opset > kMaxOnnxOpset))
    return Unsupported("ai.onnx opset ", onnx_opset, " is not supported (supported: ", kMinOnnxOpset, " to ",
                       kMaxOnnxOpset, ")");
  if (g.n_sparse_initializers) return Unsupported("sparse initializers are not supported");
  // Ops first: an unsupported model fails before its weights are read.
  ITKIT_RETURN_IF_ERROR(CheckOps(g, graph.opsets, onnx_opset));

  onnx_import::NormalizeContext ctx{graph, onnx_opset, {}, {}, {}, {}};
  std::set<std::string_view> init_names;
  for (const TensorP& t : g.initializers) init_names.insert(t.name);
  for (const ValueInfoP& v : g.inputs) {
    if (init_names.count(v.name)) continue;  // IR < 4 lists initializers as inputs too
    ITKIT_ASSIGN_OR_RETURN(ValueInfo info, ConvertValueInfo(v, "graph input"));
    graph.inputs.push_back(std::move(info));
  }
  for (const ValueInfoP& v : g.outputs) {
    ITKIT_ASSIGN_OR_RETURN(ValueInfo info, ConvertValueInfo(v, "graph output"));
    graph.outputs.push_back(std::move(info));
  }
  for (const auto* list : {&graph.inputs, &graph.outputs}) {
    for (const ValueInfo& v : *list) {
      if (v.has_shape) ctx.ranks[v.name] = static_cast<int>(v.dims.size());
      if (v.dtype != DType::kUndefined) ctx.dtypes[v.name] = v.dtype;
    }
  }
  for (const ValueInfoP& v : g.value_info) {  // hints only, for the legacy rewrites
    if (v.kind != ValueInfoP::TypeKind::kTensor) continue;
    if (v.has_shape && v.dims.size() <= static_cast<size_t>(kMaxRank))
      ctx.ranks.emplace(Str(v.name), static_cast<int>(v.dims.size()));
    if (Result<DType> d = DTypeFromOnnx(v.elem_type); d.ok()) ctx.dtypes.emplace(Str(v.name), *d);
  }

  for (size_t i = 0; i < g.initializers.size(); ++i) {
    const TensorP& t = g.initializers[i];
    const std::string name = Str(t.name);
    if (name.empty()) return InvalidArgument("initializer ", i, " has no name");
    if (graph.initializers.count(name)) return InvalidArgument("initializer '", name, "' is defined twice");
    Result<Tensor> tensor = TensorFromProto(t, base_dir);
    if (!tensor.ok()) return tensor.status().WithContext(StrCat("initializer '", name, "'"));
    ctx.ranks[name] = tensor->rank();
    ctx.dtypes[name] = tensor->dtype();
    graph.initializers.emplace(name, std::move(tensor).value());
  }

  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const NodeP& np = g.nodes[i];
    Node node;
    node.name = Str(np.name);
    node.op_type = Str(np.op_type);
    node.domain = Str(np.domain);
    for (std::string_view s : np.inputs) node.inputs.push_back(Str(s));
    for (std::string_view s : np.outputs) node.outputs.push_back(Str(s));
    for (const AttributeP& a : np.attributes) {
      const std::string name = Str(a.name);
      if (name.empty()) return InvalidArgument(node.Describe(), ": attribute with an empty name");
      if (node.attrs.Has(name)) return InvalidArgument(node.Describe(), ": attribute '", name, "' appears twice");
      Result<Attribute> attr = ConvertAttribute(a, base_dir);
      if (!attr.ok()) return attr.status().WithContext(StrCat(node.Describe(), ": attribute '", name, "'"));
      node.attrs.Set(name, std::move(attr).value());
    }
    if (IsOnnxDomain(node.domain) && node.op_type == "Constant") {
      ITKIT_RETURN_IF_ERROR(ConstantToInitializer(node, graph));
      const Tensor& t = graph.initializers[node.outputs[0]];
      ctx.ranks[node.outputs[0]] = t.rank();
      ctx.dtypes[node.outputs[0]] = t.dtype();
      continue;
    }
    graph.nodes.push_back(std::move(node));
  }

  for (const auto& [name, t] : graph.initializers) ctx.used_names.insert(name);
  for (const ValueInfo& v : graph.inputs) ctx.used_names.insert(v.name);
  for (const Node& n : graph.nodes) {
    ctx.used_names.insert(n.inputs.begin(), n.inputs.end());
    ctx.used_names.insert(n.outputs.begin(), n.outputs.end());
    if (!n.name.empty()) ctx.used_names.insert(n.name);
  }
  for (Node& node : graph.nodes) {
    if (!IsOnnxDomain(node.domain)) continue;
    for (const auto& row : onnx_import::OnnxOpNormalizers()) {
      if (row.op_type != node.op_type || onnx_opset > row.max_opset) continue;
      ITKIT_RETURN_IF_ERROR(row.fn(node, ctx));
    }
  }
  for (Node& n : ctx.new_nodes) {
    if (!FindOpSchema(n.domain, n.op_type))
      return Unsupported("rewriting the old opset needs ", n.op_type, ", which the runtime does not support");
    graph.nodes.push_back(std::move(n));
  }
  return ValidateAndSortGraph(graph);
}

Result<Model> Import(std::string_view bytes, const std::string& base_dir) {
  if (static_cast<int64_t>(bytes.size()) > kMaxProtobufBytes) return TooLarge(static_cast<int64_t>(bytes.size()));
  ModelP m;
  ITKIT_RETURN_IF_ERROR(ParseModel(bytes, m));
  if (!m.has_graph) return InvalidArgument("the model has no graph (not an ONNX model?)");
  Model model;
  model.source = "<memory>";
  model.metadata.ir_version = m.ir_version;
  model.metadata.producer_name = Str(m.producer_name);
  model.metadata.producer_version = Str(m.producer_version);
  for (const auto& [k, v] : m.metadata) model.metadata.props[Str(k)] = Str(v);
  ITKIT_RETURN_IF_ERROR(ImportGraph(m, base_dir, model));
  return model;
}

// The API boundary: nothing thrown below (bad_alloc, filesystem errors) escapes.
template <typename Fn>
auto Guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return OutOfMemory("out of memory while importing the ONNX model");
  } catch (const std::exception& e) {
    return Internal("unexpected exception while importing: ", e.what());
  }
}

Result<OnnxTensor> TensorFromBytes(std::string_view bytes, const std::string& base_dir) {
  if (static_cast<int64_t>(bytes.size()) > kMaxProtobufBytes) return TooLarge(static_cast<int64_t>(bytes.size()));
  TensorP t;
  ITKIT_RETURN_IF_ERROR(ParseTensor(bytes, 0, t));
  OnnxTensor out;
  out.name = Str(t.name);
  Result<Tensor> tensor = TensorFromProto(t, base_dir);
  if (!tensor.ok()) return tensor.status().WithContext(StrCat("tensor '", out.name, "'"));
  out.tensor = std::move(tensor).value();
  return out;
}

std::string ParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? std::string(".") : dir;
}

}  // namespace

Result<Model> LoadOnnxModelFromBytes(std::string_view bytes, const std::string& base_dir_for_external_data) {
  return Guarded([&]() -> Result<Model> { return Import(bytes, base_dir_for_external_data); });
}

Result<Model> LoadOnnxModel(const std::string& path) {
  return Guarded([&]() -> Result<Model> {
    ITKIT_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
    Result<Model> model = Import(bytes, ParentDir(path));
    if (!model.ok()) return model.status().WithContext(path);
    model->source = path;
    return model;
  });
}

Result<OnnxTensor> LoadOnnxTensorFromBytes(std::string_view bytes) {
  return Guarded([&]() -> Result<OnnxTensor> { return TensorFromBytes(bytes, ""); });
}

Result<OnnxTensor> LoadOnnxTensor(const std::string& path) {
  return Guarded([&]() -> Result<OnnxTensor> {
    ITKIT_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
    Result<OnnxTensor> t = TensorFromBytes(bytes, ParentDir(path));
    if (!t.ok()) return t.status().WithContext(path);
    return t;
  });
}

}  // namespace itkit
