#include "tensor_proto.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>

#include "wire.h"

namespace itkit::onnx_import {

using namespace onnx_proto;

static_assert(std::endian::native == std::endian::little,
              "raw_data is little-endian; big-endian hosts would need byte swapping");

Result<DType> DTypeFromOnnx(int64_t onnx_type) {
  const DType dtype = DTypeFromOnnxCode(onnx_type);
  if (dtype != DType::kUndefined) return dtype;
  if (onnx_type == kOnnxUndefined) return InvalidArgument("data type is UNDEFINED");
  if (onnx_type > 0 && onnx_type <= kOnnxBfloat16)
    return Unsupported("data type ", OnnxDataTypeName(onnx_type),
                       " is not supported (supported: FLOAT, FLOAT16, INT64, INT32, UINT8, BOOL)");
  return InvalidArgument("invalid data type ", onnx_type);
}

Result<int64_t> CheckedShapeElementCount(const Shape& dims) {
  ITKIT_ASSIGN_OR_RETURN(int64_t count, CheckedElementCount(dims));
  int64_t product = 1;
  for (int64_t d : dims) {
    if (d == 0) continue;
    if (product > std::numeric_limits<int64_t>::max() / d)
      return InvalidArgument("shape ", ShapeToString(dims), " overflows (its non-zero dims multiply past int64)");
    product *= d;
  }
  return count;
}

namespace {

Result<int64_t> ParseNonNegative(std::string_view text, std::string_view key) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0)
    return InvalidArgument("external data '", key, "' is not a non-negative integer: '", text, "'");
  return v;
}

// Lexical checks only: symlinks inside the model folder are followed on purpose
// (model stores such as the Hugging Face cache link weights to a blob folder).
Status CheckRelativeLocation(std::string_view location) {
  if (location.empty()) return InvalidArgument("external data has no 'location'");
  if (location.find('\0') != std::string_view::npos) return InvalidArgument("external data location contains NUL");
  const std::filesystem::path p{std::string(location)};
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory())
    return InvalidArgument("external data location '", location, "' must be relative to the model's folder");
  for (const auto& part : p)
    if (part == "..")
      return InvalidArgument("external data location '", location, "' escapes the model's folder ('..')");
  return Status::Ok();
}

// Validates location and sizes against the file before allocating anything.
Result<Tensor> ReadExternal(const TensorP& t, const std::string& base_dir, DType dtype, int64_t bytes_needed) {
  std::string_view location;
  int64_t offset = 0, length = -1;
  for (const auto& [key, value] : t.external_data) {
    if (key == "location") {
      location = value;
    } else if (key == "offset") {
      ITKIT_ASSIGN_OR_RETURN(offset, ParseNonNegative(value, key));
    } else if (key == "length") {
      ITKIT_ASSIGN_OR_RETURN(length, ParseNonNegative(value, key));
    }  // "checksum" and unknown keys are ignored
  }
  ITKIT_RETURN_IF_ERROR(CheckRelativeLocation(location));
  if (base_dir.empty())
    return InvalidArgument("external data '", location,
                           "' cannot be resolved: the model was loaded from memory without a base directory");
  if (length >= 0 && length != bytes_needed)
    return InvalidArgument("external data length ", length, " does not match the ", bytes_needed,
                           " bytes its shape and data type need");
  const std::string path = (std::filesystem::path(base_dir) / std::string(location)).string();
  // O_NONBLOCK: opening a FIFO must not hang; it is then refused as not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IoError("cannot open external data file '", path, "': ", std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return IoError("cannot stat '", path, "': ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("external data '", path, "' is not a regular file");
  const int64_t size = st.st_size;
  if (offset > size || bytes_needed > size - offset)
    return InvalidArgument("external data file '", path, "' has ", size, " bytes; the tensor needs ", bytes_needed,
                           " bytes at offset ", offset);
  ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(dtype, t.dims));
  auto* dst = static_cast<char*>(out.raw());
  int64_t done = 0;
  while (done < bytes_needed) {
    const ssize_t n = ::pread(fd, dst + done, static_cast<size_t>(bytes_needed - done), offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("reading '", path, "': ", std::strerror(errno));
    if (n == 0) return IoError("'", path, "' ended early (truncated while reading?)");
    done += n;
  }
  return out;
}

// Which typed field holds each dtype's values (FLOAT16/BOOL/UINT8 travel in int32_data).
enum class TypedField { kFloat = 4, kInt32 = 5, kInt64 = 7 };

TypedField FieldFor(DType dtype) {
  switch (dtype) {
    case DType::kF32: return TypedField::kFloat;
    case DType::kI64: return TypedField::kInt64;
    default: return TypedField::kInt32;
  }
}

Status CheckTypedCounts(const TensorP& t, DType dtype, int64_t count) {
  const TypedField want = FieldFor(dtype);
  const size_t n_want = want == TypedField::kFloat ? t.n_float : want == TypedField::kInt64 ? t.n_int64 : t.n_int32;
  if (t.n_float + t.n_int32 + t.n_int64 != n_want || t.n_other != 0)
    return InvalidArgument("its values are stored in a field that does not match its data type ",
                           DTypeName(dtype));
  if (static_cast<int64_t>(n_want) != count)
    return InvalidArgument("it holds ", n_want, " values but its shape ", ShapeToString(t.dims), " needs ", count);
  return Status::Ok();
}

// `out` is allocated with `count` elements; CheckTypedCounts has passed.
Status DecodeTyped(const TensorP& t, DType dtype, int64_t count, Tensor& out) {
  const TypedField want = FieldFor(dtype);
  if (count == 0) return Status::Ok();
  int64_t i = 0;
  Status range = Status::Ok();
  auto store = [&](int64_t v) {
    if (i >= count) return;  // only reachable with corrupt varints, caught below
    switch (dtype) {
      case DType::kI64: out.data<int64_t>()[i] = v; break;
      case DType::kI32:
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
          range = InvalidArgument("int32 value ", v, " out of range");
        out.data<int32_t>()[i] = static_cast<int32_t>(v);
        break;
      case DType::kF16:
        if (v < 0 || v > 0xffff) range = InvalidArgument("float16 bit pattern ", v, " out of range");
        out.data<uint16_t>()[i] = static_cast<uint16_t>(v);
        break;
      case DType::kU8:
        if (v < 0 || v > 0xff) range = InvalidArgument("uint8 value ", v, " out of range");
        out.data<uint8_t>()[i] = static_cast<uint8_t>(v);
        break;
      case DType::kBool: out.data<uint8_t>()[i] = v != 0 ? 1 : 0; break;
      default: break;
    }
    ++i;
  };
  onnx_wire::Reader r(t.message);
  onnx_wire::Field f;
  while (true) {
    ITKIT_ASSIGN_OR_RETURN(bool more, r.Next(f));
    if (!more) break;
    if (f.number != static_cast<uint32_t>(want)) continue;
    if (want == TypedField::kFloat) {
      ITKIT_RETURN_IF_ERROR(onnx_wire::ForEachFixed32(f, [&](uint32_t bits) {
        if (i < count) std::memcpy(out.data<float>() + i, &bits, 4);
        ++i;
      }));
    } else {
      ITKIT_RETURN_IF_ERROR(onnx_wire::ForEachVarint(f, store));
    }
    ITKIT_RETURN_IF_ERROR(range);
  }
  if (i != count) return InvalidArgument("corrupt typed data: decoded ", i, " values, expected ", count);
  return Status::Ok();
}

}  // namespace

Result<Tensor> TensorFromProto(const TensorP& t, const std::string& base_dir) {
  ITKIT_ASSIGN_OR_RETURN(DType dtype, DTypeFromOnnx(t.data_type));
  if (t.has_segment) return Unsupported("segmented tensors are not supported");
  if (t.dims.size() > static_cast<size_t>(kMaxRank))
    return Unsupported("rank ", t.dims.size(), " exceeds the runtime's maximum of ", kMaxRank);
  ITKIT_ASSIGN_OR_RETURN(int64_t count, CheckedShapeElementCount(t.dims));
  const auto elem = static_cast<int64_t>(DTypeSize(dtype));
  if (count > kMaxTensorBytes / elem)
    return ResourceExhausted("shape ", ShapeToString(t.dims), " exceeds the ", kMaxTensorBytes >> 30,
                             " GiB tensor limit");
  const int64_t bytes = count * elem;
  const bool typed = t.n_float + t.n_int32 + t.n_int64 + t.n_other > 0;

  // Every size is checked against data actually present before allocating.
  if (t.data_location == 1) {
    if (t.has_raw_data || typed) return InvalidArgument("it is marked EXTERNAL but also holds inline data");
    ITKIT_ASSIGN_OR_RETURN(Tensor out, ReadExternal(t, base_dir, dtype, bytes));
    if (dtype == DType::kBool)
      for (int64_t i = 0; i < count; ++i) out.data<uint8_t>()[i] = out.data<uint8_t>()[i] ? 1 : 0;
    return out;
  }
  if (t.data_location != 0) return InvalidArgument("unknown data_location ", t.data_location);
  if (t.has_raw_data) {
    if (typed) return InvalidArgument("it holds both raw_data and typed data fields");
    if (static_cast<int64_t>(t.raw_data.size()) != bytes)
      return InvalidArgument("raw_data has ", t.raw_data.size(), " bytes; shape ", ShapeToString(t.dims), " of ",
                             DTypeName(dtype), " needs ", bytes);
    ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(dtype, t.dims));
    if (bytes) std::memcpy(out.raw(), t.raw_data.data(), static_cast<size_t>(bytes));
    // Kernels may rely on bools being exactly 0/1.
    if (dtype == DType::kBool)
      for (int64_t i = 0; i < count; ++i) out.data<uint8_t>()[i] = out.data<uint8_t>()[i] ? 1 : 0;
    return out;
  }
  if (!typed && count != 0) return InvalidArgument("it has no data (shape ", ShapeToString(t.dims), ")");
  // Typed values are at least one byte each on the wire, so `count` is bounded by the
  // input size once it matches the counted values (checked first in DecodeTyped).
  ITKIT_RETURN_IF_ERROR(CheckTypedCounts(t, dtype, count));
  ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(dtype, t.dims));
  ITKIT_RETURN_IF_ERROR(DecodeTyped(t, dtype, count, out));
  return out;
}

}  // namespace itkit::onnx_import
