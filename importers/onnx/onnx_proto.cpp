#include "onnx_proto.h"

#include <string>

#include "wire.h"

namespace itkit::onnx_proto {

using onnx_wire::Field;
using onnx_wire::Reader;
using onnx_wire::WireType;

std::string_view OnnxDataTypeName(int64_t type) {
  static constexpr std::string_view kNames[] = {
      "UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING",
      "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  if (type >= 0 && type < static_cast<int64_t>(std::size(kNames))) return kNames[type];
  return "UNKNOWN";
}

namespace {

// Unknown fields are skipped (newer ONNX versions add fields); known fields with the
// wrong wire type are errors, via the As* helpers.
#define PARSE_LOOP(reader, field) \
  Field field;                    \
  while (true) {                  \
    ITKIT_ASSIGN_OR_RETURN(bool more_, reader.Next(field)); \
    if (!more_) break;

#define PARSE_LOOP_END }

Status ParseStringPair(std::string_view bytes, size_t base, StringPair& out) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    if (f.number == 1) { ITKIT_ASSIGN_OR_RETURN(out.first, onnx_wire::AsBytes(f)); }
    else if (f.number == 2) { ITKIT_ASSIGN_OR_RETURN(out.second, onnx_wire::AsBytes(f)); }
  PARSE_LOOP_END
  return Status::Ok();
}

Status ParseTensorImpl(std::string_view bytes, size_t base, TensorP& t) {
  t.message = bytes;
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    switch (f.number) {
      case 1: { ITKIT_RETURN_IF_ERROR(onnx_wire::AppendInt64s(f, t.dims)); break; }
      case 2: {
        ITKIT_ASSIGN_OR_RETURN(int64_t v, onnx_wire::AsInt64(f));
        t.data_type = static_cast<int32_t>(v);
        break;
      }
      case 3: t.has_segment = true; break;
      case 4: { ITKIT_ASSIGN_OR_RETURN(size_t n, onnx_wire::CountFixed32(f)); t.n_float += n; break; }
      case 5: { ITKIT_ASSIGN_OR_RETURN(size_t n, onnx_wire::CountVarints(f)); t.n_int32 += n; break; }
      case 7: { ITKIT_ASSIGN_OR_RETURN(size_t n, onnx_wire::CountVarints(f)); t.n_int64 += n; break; }
      case 6: case 10: case 11: t.n_other += 1; break;  // string/double/uint64 data
      case 8: { ITKIT_ASSIGN_OR_RETURN(t.name, onnx_wire::AsBytes(f)); break; }
      case 9: {
        ITKIT_ASSIGN_OR_RETURN(t.raw_data, onnx_wire::AsBytes(f));
        t.has_raw_data = true;
        break;
      }
      case 13: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        StringPair kv;
        ITKIT_RETURN_IF_ERROR(ParseStringPair(b, r.payload_offset(), kv));
        t.external_data.push_back(kv);
        break;
      }
      case 14: { ITKIT_ASSIGN_OR_RETURN(t.data_location, onnx_wire::AsInt64(f)); break; }
      default: break;
    }
  PARSE_LOOP_END
  return Status::Ok();
}

// A singular TensorProto field seen twice would need protobuf's merge semantics
// across two buffers; no exporter writes that, so it is refused.
Status ParseSingularTensor(const Field& f, size_t base, bool& seen, TensorP& t) {
  ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
  if (seen) return InvalidArgument("tensor field ", f.number, " appears twice");
  seen = true;
  return ParseTensorImpl(b, base, t);
}

Status ParseDim(std::string_view bytes, size_t base, DimP& d) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    if (f.number == 1) {
      ITKIT_ASSIGN_OR_RETURN(d.value, onnx_wire::AsInt64(f));
      d.has_value = true;
      d.param = {};
    } else if (f.number == 2) {
      ITKIT_ASSIGN_OR_RETURN(d.param, onnx_wire::AsBytes(f));
      d.has_value = false;  // oneof: the last one set wins
    }
  PARSE_LOOP_END
  return Status::Ok();
}

Status ParseTensorType(std::string_view bytes, size_t base, ValueInfoP& v) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    if (f.number == 1) {
      ITKIT_ASSIGN_OR_RETURN(int64_t t, onnx_wire::AsInt64(f));
      v.elem_type = static_cast<int32_t>(t);
    } else if (f.number == 2) {
      ITKIT_ASSIGN_OR_RETURN(std::string_view shape, onnx_wire::AsBytes(f));
      v.has_shape = true;
      Reader sr(shape, r.payload_offset());
      PARSE_LOOP(sr, df)
        if (df.number != 1) continue;
        ITKIT_ASSIGN_OR_RETURN(std::string_view dim, onnx_wire::AsBytes(df));
        v.dims.emplace_back();
        ITKIT_RETURN_IF_ERROR(ParseDim(dim, sr.payload_offset(), v.dims.back()));
      PARSE_LOOP_END
    }
  PARSE_LOOP_END
  return Status::Ok();
}

Status ParseValueInfo(std::string_view bytes, size_t base, ValueInfoP& v) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    if (f.number == 1) {
      ITKIT_ASSIGN_OR_RETURN(v.name, onnx_wire::AsBytes(f));
    } else if (f.number == 2) {
      ITKIT_ASSIGN_OR_RETURN(std::string_view type, onnx_wire::AsBytes(f));
      Reader tr(type, r.payload_offset());
      PARSE_LOOP(tr, tf)
        switch (tf.number) {
          case 1: {
            ITKIT_ASSIGN_OR_RETURN(std::string_view tt, onnx_wire::AsBytes(tf));
            v.kind = ValueInfoP::TypeKind::kTensor;
            ITKIT_RETURN_IF_ERROR(ParseTensorType(tt, tr.payload_offset(), v));
            break;
          }
          case 4: v.kind = ValueInfoP::TypeKind::kOther; v.other_kind = "sequence"; break;
          case 5: v.kind = ValueInfoP::TypeKind::kOther; v.other_kind = "map"; break;
          case 8: v.kind = ValueInfoP::TypeKind::kOther; v.other_kind = "sparse tensor"; break;
          case 9: v.kind = ValueInfoP::TypeKind::kOther; v.other_kind = "optional"; break;
          default: break;
        }
      PARSE_LOOP_END
    }
  PARSE_LOOP_END
  return Status::Ok();
}

Status ParseAttribute(std::string_view bytes, size_t base, AttributeP& a) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    switch (f.number) {
      case 1: { ITKIT_ASSIGN_OR_RETURN(a.name, onnx_wire::AsBytes(f)); break; }
      case 20: { ITKIT_ASSIGN_OR_RETURN(a.type, onnx_wire::AsInt64(f)); break; }
      case 21: { ITKIT_ASSIGN_OR_RETURN(a.ref_attr_name, onnx_wire::AsBytes(f)); break; }
      case 2: { ITKIT_ASSIGN_OR_RETURN(a.f, onnx_wire::AsFloat(f)); a.has_f = true; break; }
      case 3: { ITKIT_ASSIGN_OR_RETURN(a.i, onnx_wire::AsInt64(f)); a.has_i = true; break; }
      case 4: { ITKIT_ASSIGN_OR_RETURN(a.s, onnx_wire::AsBytes(f)); a.has_s = true; break; }
      case 5: { ITKIT_RETURN_IF_ERROR(ParseSingularTensor(f, r.payload_offset(), a.has_t, a.t)); break; }
      case 7: { ITKIT_RETURN_IF_ERROR(onnx_wire::AppendFloats(f, a.floats)); break; }
      case 8: { ITKIT_RETURN_IF_ERROR(onnx_wire::AppendInt64s(f, a.ints)); break; }
      case 9: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view s, onnx_wire::AsBytes(f));
        a.strings.push_back(s);
        break;
      }
      case 6: case 11: a.n_graphs += 1; break;
      case 10: a.n_tensors += 1; break;
      case 22: case 23: a.n_sparse += 1; break;
      case 14: case 15: a.n_type_protos += 1; break;
      default: break;
    }
  PARSE_LOOP_END
  return Status::Ok();
}

Status ParseNode(std::string_view bytes, size_t base, NodeP& n) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    switch (f.number) {
      case 1: { ITKIT_ASSIGN_OR_RETURN(std::string_view s, onnx_wire::AsBytes(f)); n.inputs.push_back(s); break; }
      case 2: { ITKIT_ASSIGN_OR_RETURN(std::string_view s, onnx_wire::AsBytes(f)); n.outputs.push_back(s); break; }
      case 3: { ITKIT_ASSIGN_OR_RETURN(n.name, onnx_wire::AsBytes(f)); break; }
      case 4: { ITKIT_ASSIGN_OR_RETURN(n.op_type, onnx_wire::AsBytes(f)); break; }
      case 7: { ITKIT_ASSIGN_OR_RETURN(n.domain, onnx_wire::AsBytes(f)); break; }
      case 5: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        n.attributes.emplace_back();
        Status s = ParseAttribute(b, r.payload_offset(), n.attributes.back());
        if (!s.ok()) return s.WithContext(StrCat("attribute ", n.attributes.size() - 1));
        break;
      }
      default: break;
    }
  PARSE_LOOP_END
  return Status::Ok();
}

std::string NodeLabel(const NodeP& n, size_t index) {
  std::string label = StrCat("graph node ", index);
  if (!n.name.empty()) label += StrCat(" '", n.name, "'");
  if (!n.op_type.empty()) label += StrCat(" (", n.op_type, ")");
  return label;
}

Status ParseGraph(std::string_view bytes, size_t base, GraphP& g) {
  Reader r(bytes, base);
  PARSE_LOOP(r, f)
    switch (f.number) {
      case 2: { ITKIT_ASSIGN_OR_RETURN(g.name, onnx_wire::AsBytes(f)); break; }
      case 1: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        g.nodes.emplace_back();
        Status s = ParseNode(b, r.payload_offset(), g.nodes.back());
        if (!s.ok()) return s.WithContext(NodeLabel(g.nodes.back(), g.nodes.size() - 1));
        break;
      }
      case 5: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        g.initializers.emplace_back();
        Status s = ParseTensorImpl(b, r.payload_offset(), g.initializers.back());
        if (!s.ok()) return s.WithContext(StrCat("graph initializer ", g.initializers.size() - 1));
        break;
      }
      case 11: case 12: case 13: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        auto& list = f.number == 11 ? g.inputs : f.number == 12 ? g.outputs : g.value_info;
        list.emplace_back();
        Status s = ParseValueInfo(b, r.payload_offset(), list.back());
        const char* what = f.number == 11 ? "input" : f.number == 12 ? "output" : "value_info";
        if (!s.ok()) return s.WithContext(StrCat("graph ", what, " ", list.size() - 1));
        break;
      }
      case 15: g.n_sparse_initializers += 1; break;
      default: break;
    }
  PARSE_LOOP_END
  return Status::Ok();
}

}  // namespace

Status ParseTensor(std::string_view bytes, size_t base_offset, TensorP& tensor) {
  return ParseTensorImpl(bytes, base_offset, tensor);
}

Status ParseModel(std::string_view bytes, ModelP& m) {
  Reader r(bytes);
  PARSE_LOOP(r, f)
    switch (f.number) {
      case 1: { ITKIT_ASSIGN_OR_RETURN(m.ir_version, onnx_wire::AsInt64(f)); break; }
      case 2: { ITKIT_ASSIGN_OR_RETURN(m.producer_name, onnx_wire::AsBytes(f)); break; }
      case 3: { ITKIT_ASSIGN_OR_RETURN(m.producer_version, onnx_wire::AsBytes(f)); break; }
      case 7: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        m.has_graph = true;
        ITKIT_RETURN_IF_ERROR(ParseGraph(b, r.payload_offset(), m.graph));
        break;
      }
      case 8: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        std::pair<std::string_view, int64_t> opset{"", 0};
        Reader or_(b, r.payload_offset());
        PARSE_LOOP(or_, of)
          if (of.number == 1) { ITKIT_ASSIGN_OR_RETURN(opset.first, onnx_wire::AsBytes(of)); }
          else if (of.number == 2) { ITKIT_ASSIGN_OR_RETURN(opset.second, onnx_wire::AsInt64(of)); }
        PARSE_LOOP_END
        m.opsets.push_back(opset);
        break;
      }
      case 14: {
        ITKIT_ASSIGN_OR_RETURN(std::string_view b, onnx_wire::AsBytes(f));
        StringPair kv;
        Status s = ParseStringPair(b, r.payload_offset(), kv);
        if (!s.ok()) return s.WithContext("metadata_props");
        m.metadata.push_back(kv);
        break;
      }
      case 20: m.n_training_info += 1; break;
      case 25: m.n_functions += 1; break;
      default: break;
    }
  PARSE_LOOP_END
  return Status::Ok();
}

}  // namespace itkit::onnx_proto
