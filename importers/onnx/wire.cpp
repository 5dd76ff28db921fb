#include "wire.h"

#include <cstring>

namespace itkit::onnx_wire {

namespace detail {

bool DecodeVarint(std::string_view data, size_t& pos, uint64_t& out) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= data.size()) return false;
    const auto byte = static_cast<unsigned char>(data[pos++]);
    // The 10th byte may only carry the top bit of a 64-bit value.
    if (shift == 63 && byte > 1) return false;
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      out = result;
      return true;
    }
  }
  return false;
}

Status WrongWireType(const Field& f) {
  return InvalidArgument("field ", f.number, " has unexpected wire type ", static_cast<int>(f.type));
}

}  // namespace detail

Status Reader::Corrupt(const char* what) const {
  return InvalidArgument("corrupt protobuf at byte ", base_ + pos_, ": ", what);
}

Result<uint64_t> Reader::ReadVarint() {
  uint64_t v = 0;
  if (!detail::DecodeVarint(data_, pos_, v)) return Corrupt("truncated or overlong varint");
  return v;
}

Result<bool> Reader::Next(Field& f) {
  if (pos_ >= data_.size()) return false;
  ITKIT_ASSIGN_OR_RETURN(uint64_t key, ReadVarint());
  const uint64_t number = key >> 3;
  if (number == 0 || number > 0x1fffffff) return Corrupt("invalid field number");
  f.number = static_cast<uint32_t>(number);
  f.bytes = {};
  f.value = 0;
  switch (key & 7) {
    case 0: {
      f.type = WireType::kVarint;
      payload_pos_ = pos_;
      ITKIT_ASSIGN_OR_RETURN(f.value, ReadVarint());
      return true;
    }
    case 1: {
      f.type = WireType::kFixed64;
      if (data_.size() - pos_ < 8) return Corrupt("truncated fixed64");
      payload_pos_ = pos_;
      uint64_t v = 0;
      std::memcpy(&v, data_.data() + pos_, 8);  // little-endian hosts only (see importer)
      f.value = v;
      pos_ += 8;
      return true;
    }
    case 2: {
      f.type = WireType::kLen;
      ITKIT_ASSIGN_OR_RETURN(uint64_t len, ReadVarint());
      if (len > data_.size() - pos_)
        return Corrupt("length-delimited field runs past the end of its message (truncated file?)");
      payload_pos_ = pos_;
      f.bytes = data_.substr(pos_, static_cast<size_t>(len));
      pos_ += static_cast<size_t>(len);
      return true;
    }
    case 5: {
      f.type = WireType::kFixed32;
      if (data_.size() - pos_ < 4) return Corrupt("truncated fixed32");
      payload_pos_ = pos_;
      uint32_t v = 0;
      std::memcpy(&v, data_.data() + pos_, 4);
      f.value = v;
      pos_ += 4;
      return true;
    }
    default:
      // Groups (3/4) are proto2-only and never written by ONNX exporters.
      return Corrupt("unsupported wire type (group or invalid)");
  }
}

Status AppendInt64s(const Field& f, std::vector<int64_t>& out) {
  return ForEachVarint(f, [&](int64_t v) { out.push_back(v); });
}

Status AppendFloats(const Field& f, std::vector<float>& out) {
  return ForEachFixed32(f, [&](uint32_t bits) {
    float v;
    std::memcpy(&v, &bits, 4);
    out.push_back(v);
  });
}

Result<size_t> CountVarints(const Field& f) {
  if (f.type == WireType::kVarint) return size_t{1};
  if (f.type != WireType::kLen) return detail::WrongWireType(f);
  // Every varint ends with exactly one byte whose high bit is clear.
  size_t n = 0;
  for (char c : f.bytes) n += (static_cast<unsigned char>(c) & 0x80) ? 0 : 1;
  if (!f.bytes.empty() && (static_cast<unsigned char>(f.bytes.back()) & 0x80))
    return InvalidArgument("corrupt packed varint in field ", f.number);
  return n;
}

Result<size_t> CountFixed32(const Field& f) {
  if (f.type == WireType::kFixed32) return size_t{1};
  if (f.type != WireType::kLen) return detail::WrongWireType(f);
  if (f.bytes.size() % 4 != 0)
    return InvalidArgument("packed fixed32 field ", f.number, " has ", f.bytes.size(), " bytes, not a multiple of 4");
  return f.bytes.size() / 4;
}

Result<int64_t> AsInt64(const Field& f) {
  if (f.type != WireType::kVarint) return detail::WrongWireType(f);
  return static_cast<int64_t>(f.value);
}

Result<float> AsFloat(const Field& f) {
  if (f.type != WireType::kFixed32) return detail::WrongWireType(f);
  const auto bits = static_cast<uint32_t>(f.value);
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

Result<std::string_view> AsBytes(const Field& f) {
  if (f.type != WireType::kLen) return detail::WrongWireType(f);
  return f.bytes;
}

}  // namespace itkit::onnx_wire
