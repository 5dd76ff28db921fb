#include "rle_deflate.h"

#include <array>
#include <bit>
#include <cstring>
#include <memory>
#include <new>

#ifdef ITKIT_HAVE_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

namespace itkit::pipeline {
namespace {

// Bits in stream order (the first bit is bit 0), as deflate packs them.
struct Code {
  uint32_t bits = 0;
  uint32_t count = 0;
};

uint32_t Reverse(uint32_t v, uint32_t n) {
  uint32_t r = 0;
  for (uint32_t i = 0; i < n; ++i) r |= ((v >> i) & 1u) << (n - 1 - i);
  return r;
}

// The fixed literal/length code of symbol s (RFC 1951 §3.2.6). Huffman codes are
// sent most significant bit first, hence reversed into stream order.
Code FixedLitLen(uint32_t s) {
  if (s < 144) return {Reverse(0x30 + s, 8), 8};
  if (s < 256) return {Reverse(0x190 + s - 144, 9), 9};
  if (s < 280) return {Reverse(s - 256, 7), 7};
  return {Reverse(0xC0 + s - 280, 8), 8};
}

struct Tables {
  std::array<Code, 256> literal;
  // [distance - 1][length]: length symbol, its extra bits and the distance code in
  // one code of at most 8 + 5 + 5 bits.
  std::array<std::array<Code, 259>, 2> match;

  Tables() {
    static const uint32_t kBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                       31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const uint32_t kExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                        2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    for (uint32_t b = 0; b < 256; ++b) literal[b] = FixedLitLen(b);
    for (uint32_t len = 3; len <= 258; ++len) {
      uint32_t s = 28;
      while (kBase[s] > len) --s;
      const Code lc = FixedLitLen(257 + s);
      for (uint32_t d = 0; d < 2; ++d) {
        Code& c = match[d][len];
        c.bits = lc.bits | ((len - kBase[s]) << lc.count);  // extra bits go least significant first
        c.count = lc.count + kExtra[s];
        c.bits |= Reverse(d, 5) << c.count;  // distance d + 1 is symbol d: 5 bits, no extra
        c.count += 5;
      }
    }
  }
};

class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void Put(Code c) {
    acc_ |= static_cast<uint64_t>(c.bits) << count_;
    count_ += c.count;
    if (count_ >= 32) {
      for (int k = 0; k < 4; ++k) out_[k] = static_cast<uint8_t>(acc_ >> (8 * k));
      out_ += 4;
      acc_ >>= 32;
      count_ -= 32;
    }
  }
  size_t written(const uint8_t* begin) const { return static_cast<size_t>(out_ - begin); }
  uint8_t* Flush() {
    for (; count_ > 0; count_ = count_ > 8 ? count_ - 8 : 0, acc_ >>= 8) *out_++ = static_cast<uint8_t>(acc_);
    return out_;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  uint32_t count_ = 0;
};

// End (in bytes, a whole number of elements past `i`) of the run of the element at
// `i`: the bytes in [i + elem, end) each equal the byte `elem` before.
size_t RunEnd(const uint8_t* in, size_t i, size_t n, size_t elem) {
  size_t j = i + elem;
  if constexpr (std::endian::native == std::endian::little) {
    while (j + 8 <= n) {
      uint64_t a, b;
      std::memcpy(&a, in + j, 8);
      std::memcpy(&b, in + j - elem, 8);
      if (a != b) {
        j += static_cast<size_t>(std::countr_zero(a ^ b)) / 8;
        return i + (j - i) / elem * elem;
      }
      j += 8;
    }
  }
  while (j < n && in[j] == in[j - elem]) ++j;
  return i + (j - i) / elem * elem;
}

uint32_t Crc32(const uint8_t* in, size_t n) {
#ifdef ITKIT_HAVE_LIBDEFLATE
  return libdeflate_crc32(0, in, n);
#else
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < n;) {
    const auto len = static_cast<uInt>(std::min<size_t>(n - off, 1u << 30));
    crc = crc32(crc, in + off, len);
    off += len;
  }
  return static_cast<uint32_t>(crc);
#endif
}

}  // namespace

Result<std::vector<uint8_t>> GzipRunLength(const uint8_t* in, size_t n, size_t elem) {
  if (elem != 1 && elem != 2) return Internal("run-length gzip: element size ", elem);
  static const Tables t;
  // Worst case every byte a 9-bit literal; matches cost at most 6 bits a byte.
  const size_t bound = 10 + n / 8 * 9 + 16 + 8;
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[bound]);  // not zeroed: only the written part is touched
  if (!buf) return OutOfMemory("run-length gzip: ", bound >> 20, " MiB");
  static const uint8_t kHeader[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4 /* fastest */, 0xff /* unknown OS */};
  std::memcpy(buf.get(), kHeader, sizeof(kHeader));
  BitWriter w(buf.get() + sizeof(kHeader));
  w.Put({3, 3});  // BFINAL = 1, BTYPE = 01: one block, fixed Huffman codes
  const Code* match = t.match[elem - 1].data();
  size_t i = 0, checkpoint = 0;
  while (i + elem <= n) {
    if (i >= checkpoint) {  // every MiB: still on course for a quarter of the input?
      if (w.written(buf.get()) > i / 4 + (size_t{64} << 10)) return std::vector<uint8_t>{};
      checkpoint = i + (size_t{1} << 20);
    }
    const size_t end = RunEnd(in, i, n, elem);
    for (size_t k = 0; k < elem; ++k) w.Put(t.literal[in[i + k]]);
    size_t pos = i + elem, left = end - pos;
    while (left >= 3) {
      // Never leave 1 or 2 bytes behind a full-length match: they would need literals.
      size_t len = left > 258 ? 258 : left;
      if (left > 258 && left < 261) len = left - 3;
      w.Put(match[len]);
      pos += len;
      left -= len;
    }
    for (; pos < end; ++pos) w.Put(t.literal[in[pos]]);
    i = end;
  }
  for (; i < n; ++i) w.Put(t.literal[in[i]]);  // a trailing partial element
  w.Put(FixedLitLen(256));                     // end of block
  uint8_t* p = w.Flush();
  if (static_cast<size_t>(p - buf.get()) > n / 4 + 64) return std::vector<uint8_t>{};
  const uint32_t crc = Crc32(in, n), size = static_cast<uint32_t>(n);  // ISIZE is n mod 2^32
  for (int k = 0; k < 4; ++k) *p++ = static_cast<uint8_t>(crc >> (8 * k));
  for (int k = 0; k < 4; ++k) *p++ = static_cast<uint8_t>(size >> (8 * k));
  return std::vector<uint8_t>(buf.get(), p);
}

}  // namespace itkit::pipeline
