#include "npy.h"

#include <cstring>
#include <fstream>

namespace itkit::npy {
namespace {

Result<DType> ParseDescr(const std::string& descr) {
  if (descr == "<f4") return DType::kF32;
  if (descr == "<f2") return DType::kF16;
  if (descr == "<i8") return DType::kI64;
  if (descr == "<i4") return DType::kI32;
  if (descr == "|u1") return DType::kU8;
  if (descr == "|b1") return DType::kBool;
  return Unsupported("npy dtype '", descr, "' (supported: <f4 <f2 <i8 <i4 |u1 |b1)");
}

const char* Descr(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "<f4";
    case DType::kF16: return "<f2";
    case DType::kI64: return "<i8";
    case DType::kI32: return "<i4";
    case DType::kU8: return "|u1";
    case DType::kBool: return "|b1";
    case DType::kUndefined: break;
  }
  return "";
}

// Value of 'key' in the header dict, as the raw text up to the next top-level comma.
std::string DictValue(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t v = header.find(':', k);
  if (v == std::string::npos) return "";
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  int depth = 0;
  size_t end = v;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if ((c == ',' || c == '}') && depth == 0) break;
  }
  return header.substr(v, end - v);
}

}  // namespace

Result<Tensor> Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open '", path, "'");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) return InvalidArgument("'", path, "' is not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char len[2];
    in.read(reinterpret_cast<char*>(len), 2);
    header_len = len[0] | (len[1] << 8);
  } else {
    unsigned char len[4];
    in.read(reinterpret_cast<char*>(len), 4);
    header_len = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<uint32_t>(len[3]) << 24);
  }
  if (!in || header_len > (1u << 20)) return InvalidArgument("'", path, "': bad .npy header");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return InvalidArgument("'", path, "': truncated .npy header");
  std::string descr = DictValue(header, "descr");
  if (descr.size() < 2) return InvalidArgument("'", path, "': no dtype in .npy header");
  descr = descr.substr(1, descr.size() - 2);
  ITKIT_ASSIGN_OR_RETURN(DType dtype, ParseDescr(descr));
  if (DictValue(header, "fortran_order").find("True") != std::string::npos)
    return Unsupported("'", path, "': Fortran-ordered arrays");
  Shape shape;
  const std::string shape_text = DictValue(header, "shape");
  size_t pos = 0;
  while ((pos = shape_text.find_first_of("0123456789", pos)) != std::string::npos) {
    size_t end = shape_text.find_first_not_of("0123456789", pos);
    shape.push_back(std::stoll(shape_text.substr(pos, end - pos)));
    pos = end;
  }
  ITKIT_ASSIGN_OR_RETURN(Tensor t, Tensor::Allocate(dtype, shape));
  if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.bytes())))
    return InvalidArgument("'", path, "': data shorter than shape ", ShapeToString(shape));
  return t;
}

Status Write(const std::string& path, const Tensor& tensor) {
  std::string shape = "(";
  for (size_t i = 0; i < tensor.shape().size(); ++i) shape += std::to_string(tensor.shape()[i]) + ",";
  if (tensor.shape().size() > 1) shape.pop_back();
  shape += ")";
  std::string header = std::string("{'descr': '") + Descr(tensor.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) return IoError("cannot write '", path, "'");
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(tensor.raw()), static_cast<std::streamsize>(tensor.bytes()));
  if (!out) return IoError("writing '", path, "' failed");
  return Status::Ok();
}

}  // namespace itkit::npy
