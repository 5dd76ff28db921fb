// N-dimensional iteration for the data-movement and broadcasting kernels: a box of
// `dims` walked in row-major order, where each operand (output, inputs) moves by its
// own stride per dimension (0 = broadcast, negative = reversed). Size-1 dims are
// dropped and dims that are contiguous for every operand merged, so the common cases
// (same shape, scalar, per-channel, trailing vector) become one or two dims and the
// kernels' inner loops see long runs with unit or zero stride, without per-element
// index arithmetic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "itkit/status.h"
#include "itkit/tensor.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

inline constexpr int kMaxIterOperands = 4;
inline constexpr int kMaxIterRank = 2 * kMaxRank;  // Tile walks (repeat, dim) pairs

struct NdIter {
  int rank = 1;
  int num_operands = 0;
  int64_t dims[kMaxIterRank] = {1};
  int64_t strides[kMaxIterOperands][kMaxIterRank] = {};
  int64_t total = 1;

  int64_t inner() const { return dims[rank - 1]; }
  int64_t inner_stride(int op) const { return strides[op][rank - 1]; }
};

// strides[k] has one entry per dim for operand k.
inline Result<NdIter> MakeNdIter(const std::vector<int64_t>& dims,
                                 const std::vector<std::vector<int64_t>>& strides) {
  NdIter it;
  it.num_operands = static_cast<int>(strides.size());
  if (it.num_operands > kMaxIterOperands || dims.size() > static_cast<size_t>(kMaxIterRank))
    return Internal("N-d iteration over rank ", dims.size(), " with ", strides.size(), " operands");
  for (const auto& s : strides)
    if (s.size() != dims.size()) return Internal("N-d iteration: stride count mismatch");
  it.total = 1;
  for (int64_t d : dims) it.total *= d;
  int r = 0;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] == 1) continue;  // contributes nothing to any offset
    bool merge = r > 0 && dims[d] != 0 && it.dims[r - 1] != 0;
    for (int k = 0; merge && k < it.num_operands; ++k)
      merge = it.strides[k][r - 1] == strides[static_cast<size_t>(k)][d] * dims[d];
    if (merge) {
      it.dims[r - 1] *= dims[d];
      for (int k = 0; k < it.num_operands; ++k) it.strides[k][r - 1] = strides[static_cast<size_t>(k)][d];
    } else {
      it.dims[r] = dims[d];
      for (int k = 0; k < it.num_operands; ++k) it.strides[k][r] = strides[static_cast<size_t>(k)][d];
      ++r;
    }
  }
  if (r == 0) {  // a single element
    it.dims[0] = 1;
    for (int k = 0; k < it.num_operands; ++k) it.strides[k][0] = 0;
    r = 1;
  }
  it.rank = r;
  return it;
}

// Strides of an input of `in_shape` broadcast (numpy, right-aligned) to `out_shape`.
inline std::vector<int64_t> BroadcastStrides(const Shape& in_shape, const Shape& out_shape) {
  std::vector<int64_t> s(out_shape.size(), 0);
  const std::vector<int64_t> cs = ContiguousStrides(in_shape);
  const size_t lead = out_shape.size() - in_shape.size();
  for (size_t i = 0; i < in_shape.size(); ++i)
    s[lead + i] = in_shape[i] == 1 ? 0 : cs[i];
  return s;
}

// Calls fn(const int64_t* offsets, int64_t len) for runs along the innermost dim,
// split over the pool in ranges of at least `grain` elements. A run starts operand k
// at offsets[k] (elements) and moves it by it.inner_stride(k) per element. Ranges
// cover disjoint element sets, so writes through an operand that maps elements
// one-to-one never race.
template <typename Fn>
void ForEachRun(const NdIter& it, ThreadPool* pool, int64_t grain, const Fn& fn) {
  if (it.total <= 0) return;
  const int r = it.rank;
  const int nk = it.num_operands;
  ParallelFor(pool, it.total, grain, [&](int64_t begin, int64_t end) {
    int64_t idx[kMaxIterRank];
    int64_t off[kMaxIterOperands] = {};
    int64_t rem = begin;
    for (int d = r - 1; d >= 0; --d) {
      idx[d] = rem % it.dims[d];
      rem /= it.dims[d];
      for (int k = 0; k < nk; ++k) off[k] += idx[d] * it.strides[k][d];
    }
    const int64_t inner = it.dims[r - 1];
    int64_t pos = begin;
    while (pos < end) {
      const int64_t len = std::min(inner - idx[r - 1], end - pos);
      fn(static_cast<const int64_t*>(off), len);
      pos += len;
      idx[r - 1] += len;
      for (int k = 0; k < nk; ++k) off[k] += len * it.strides[k][r - 1];
      if (idx[r - 1] < inner) continue;
      // Carry into the outer dims.
      for (int k = 0; k < nk; ++k) off[k] -= inner * it.strides[k][r - 1];
      idx[r - 1] = 0;
      for (int d = r - 2; d >= 0; --d) {
        ++idx[d];
        for (int k = 0; k < nk; ++k) off[k] += it.strides[k][d];
        if (idx[d] < it.dims[d]) break;
        for (int k = 0; k < nk; ++k) off[k] -= it.dims[d] * it.strides[k][d];
        idx[d] = 0;
      }
    }
  });
}

// Unsigned integer type of a given byte size: data movement never looks at values.
template <size_t kSize> struct UIntOfSize;
template <> struct UIntOfSize<1> { using type = uint8_t; };
template <> struct UIntOfSize<2> { using type = uint16_t; };
template <> struct UIntOfSize<4> { using type = uint32_t; };
template <> struct UIntOfSize<8> { using type = uint64_t; };

// Calls fn(U{}) with U the unsigned type of `elem_size` bytes; false if none.
template <typename Fn>
bool DispatchBySize(size_t elem_size, const Fn& fn) {
  switch (elem_size) {
    case 1: fn(uint8_t{}); return true;
    case 2: fn(uint16_t{}); return true;
    case 4: fn(uint32_t{}); return true;
    case 8: fn(uint64_t{}); return true;
    default: return false;
  }
}

// Copies elements of `elem_size` bytes: operand 0 of `it` is the destination,
// operand 1 the source (offsets relative to `dst`/`src`).
inline void StridedCopy(const NdIter& it, void* dst, const void* src, size_t elem_size,
                        ThreadPool* pool, int64_t grain = 1 << 15) {
  DispatchBySize(elem_size, [&](auto tag) {
    using U = decltype(tag);
    U* out = static_cast<U*>(dst);
    const U* in = static_cast<const U*>(src);
    const int64_t so = it.inner_stride(0), si = it.inner_stride(1);
    ForEachRun(it, pool, grain, [&](const int64_t* off, int64_t len) {
      U* o = out + off[0];
      const U* i = in + off[1];
      if (so == 1 && si == 1) {
        std::memcpy(o, i, static_cast<size_t>(len) * sizeof(U));
      } else if (si == 0) {
        const U v = *i;
        for (int64_t j = 0; j < len; ++j) o[j * so] = v;
      } else {
        for (int64_t j = 0; j < len; ++j) o[j * so] = i[j * si];
      }
    });
  });
}

// memcpy split over the pool in 64 KiB blocks; nothing to do when dst == src (the
// session may alias a reshaped value with its input).
inline void ParallelMemcpy(void* dst, const void* src, size_t bytes, ThreadPool* pool) {
  if (dst == src || bytes == 0) return;
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = static_cast<int64_t>((bytes + kBlock - 1) / kBlock);
  ParallelFor(pool, blocks, 16, [&](int64_t b, int64_t e) {
    const size_t begin = static_cast<size_t>(b * kBlock);
    const size_t end = std::min(bytes, static_cast<size_t>(e * kBlock));
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, end - begin);
  });
}

}  // namespace itkit::cpu
