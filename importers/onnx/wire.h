// A minimal reader of the protobuf wire format, enough for the ONNX messages.
//
// Why our own instead of Debian's libonnx/libprotobuf classes: the reader works on
// views into the file buffer (weights are copied once, straight into their tensors,
// instead of once into protobuf strings and again into tensors), every limit and
// error is ours (no protobuf logging, no ABI coupling to the distro's protobuf), and
// libFuzzer's coverage then sees the whole parse path, not just our tail of it.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "itkit/status.h"

namespace itkit::onnx_wire {

enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  WireType type = WireType::kVarint;
  uint64_t value = 0;      // varint, fixed32 and fixed64 payloads
  std::string_view bytes;  // kLen payload (a view into the reader's buffer)
};

// Iterates over the fields of one message. Errors name the byte offset relative to
// the start of the whole buffer, so nested messages report useful positions.
class Reader {
 public:
  explicit Reader(std::string_view data, size_t base_offset = 0) : data_(data), base_(base_offset) {}
  // Reads the next field into `f`; false at the end of the message.
  Result<bool> Next(Field& f);
  // Buffer offset of the payload of the field `Next` returned last (for nested readers).
  size_t payload_offset() const { return base_ + payload_pos_; }

 private:
  Result<uint64_t> ReadVarint();
  Status Corrupt(const char* what) const;

  std::string_view data_;
  size_t base_;
  size_t pos_ = 0;
  size_t payload_pos_ = 0;
};

// Decoders for repeated scalar fields, which arrive packed (one kLen field) or one
// value per field. Each appends to `out` and checks the wire type.
Status AppendInt64s(const Field& f, std::vector<int64_t>& out);  // int64/int32/enum
Status AppendFloats(const Field& f, std::vector<float>& out);    // float (fixed32)
// Element counts of such a field without decoding, so a caller can size a buffer first.
Result<size_t> CountVarints(const Field& f);
Result<size_t> CountFixed32(const Field& f);

// Calls `fn(value)` for each int64 (varint) element, in order.
template <typename Fn>
Status ForEachVarint(const Field& f, Fn&& fn);
template <typename Fn>
Status ForEachFixed32(const Field& f, Fn&& fn);

// Scalar readers for singular fields, checking the wire type.
Result<int64_t> AsInt64(const Field& f);
Result<float> AsFloat(const Field& f);
Result<std::string_view> AsBytes(const Field& f);

// ---- implementation of the templates ----

namespace detail {
// Decodes one varint at data[pos], advancing pos; false on truncation/overlong.
bool DecodeVarint(std::string_view data, size_t& pos, uint64_t& out);
Status WrongWireType(const Field& f);
}  // namespace detail

template <typename Fn>
Status ForEachVarint(const Field& f, Fn&& fn) {
  if (f.type == WireType::kVarint) {
    fn(static_cast<int64_t>(f.value));
    return Status::Ok();
  }
  if (f.type != WireType::kLen) return detail::WrongWireType(f);
  size_t pos = 0;
  while (pos < f.bytes.size()) {
    uint64_t v = 0;
    if (!detail::DecodeVarint(f.bytes, pos, v))
      return InvalidArgument("corrupt packed varint in field ", f.number);
    fn(static_cast<int64_t>(v));
  }
  return Status::Ok();
}

template <typename Fn>
Status ForEachFixed32(const Field& f, Fn&& fn) {
  if (f.type == WireType::kFixed32) {
    fn(static_cast<uint32_t>(f.value));
    return Status::Ok();
  }
  if (f.type != WireType::kLen) return detail::WrongWireType(f);
  if (f.bytes.size() % 4 != 0)
    return InvalidArgument("packed fixed32 field ", f.number, " has ", f.bytes.size(), " bytes, not a multiple of 4");
  const auto* p = reinterpret_cast<const unsigned char*>(f.bytes.data());
  for (size_t i = 0; i < f.bytes.size(); i += 4)
    fn(static_cast<uint32_t>(p[i]) | static_cast<uint32_t>(p[i + 1]) << 8 | static_cast<uint32_t>(p[i + 2]) << 16 |
       static_cast<uint32_t>(p[i + 3]) << 24);
  return Status::Ok();
}

}  // namespace itkit::onnx_wire
