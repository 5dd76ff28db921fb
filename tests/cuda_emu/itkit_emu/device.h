// What device code sees under the emulator: the built-in indices, __syncthreads,
// warp shuffles and votes, atomics, the intrinsics our kernels use, and the PTX
// instructions conv3_c32.cu issues (cp.async, ldmatrix, mma.m16n8k16), each as the
// PTX ISA defines it. Atomics need no atomicity: one emulated thread runs at a time.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "itkit_emu/core.h"

#define threadIdx (::itkit_emu::current.thread_idx)
#define blockIdx (::itkit_emu::current.block_idx)
#define blockDim (::itkit_emu::current.block_dim)
#define gridDim (::itkit_emu::current.grid_dim)
#define warpSize 32

inline void __syncthreads() { ::itkit_emu::BlockBarrier(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

namespace itkit_emu {

template <typename T>
Slot ToSlot(const T& v) {
  static_assert(sizeof(T) <= sizeof(Slot::bytes) && std::is_trivially_copyable_v<T>);
  Slot s{};
  std::memcpy(s.bytes, &v, sizeof(T));
  return s;
}
template <typename T>
T FromSlot(const Slot& s) {
  T v;
  std::memcpy(&v, s.bytes, sizeof(T));
  return v;
}

// Shuffles: each lane's slot holds its value (bytes 0..47) and its source lane (48..51).
void ShuffleCombine(const Slot* in, Slot* out, uint32_t mask);
template <typename T>
T Shuffle(const char* what, uint32_t mask, T var, int src_lane) {
  static_assert(sizeof(T) <= 48, "a shuffled value must leave the slot's source-lane bytes free");
  Slot s = ToSlot(var);
  std::memcpy(s.bytes + 48, &src_lane, sizeof(int));
  Slot out;
  WarpCollective(what, mask, s, &out, ShuffleCombine);
  return FromSlot<T>(out);
}
inline int SegmentStart(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) Fail("shuffle width must be a power of 2 from 1 to 32");
  return current.lane & ~(width - 1);
}

// __ballot_sync, __any_sync, __all_sync and __syncwarp (`what` names the intrinsic, so
// that lanes in different ones are caught as divergent).
uint32_t Ballot(const char* what, uint32_t mask, bool predicate);

// PTX: ldmatrix.sync.aligned.m8n8.x4.shared.b16 and mma.sync.aligned.m16n8k16.row.col
// .f32.f16.f16.f32 (warp_ops.cpp cites the fragment layouts).
void LdMatrixX4(uint32_t (&r)[4], uint32_t shared_address);
void MmaM16N8K16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
uint32_t SharedAddressOf(const void* p);
void* SharedPointer(uint32_t address, size_t bytes);

}  // namespace itkit_emu

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return ::itkit_emu::Shuffle("__shfl_sync", mask, var, ::itkit_emu::SegmentStart(width) + (src_lane & (width - 1)));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  const int lane = ::itkit_emu::current.lane, src = lane ^ lane_mask;
  // A lane of a later width-segment is not reachable: the caller gets its own value.
  const int end = ::itkit_emu::SegmentStart(width) + width;
  return ::itkit_emu::Shuffle("__shfl_xor_sync", mask, var, src >= end ? lane : src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  const int lane = ::itkit_emu::current.lane, src = lane + static_cast<int>(delta);
  const int end = ::itkit_emu::SegmentStart(width) + width;
  return ::itkit_emu::Shuffle("__shfl_down_sync", mask, var, src >= end ? lane : src);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  const int lane = ::itkit_emu::current.lane, src = lane - static_cast<int>(delta);
  return ::itkit_emu::Shuffle("__shfl_up_sync", mask, var, src < ::itkit_emu::SegmentStart(width) ? lane : src);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::itkit_emu::Ballot("__ballot_sync", mask, predicate != 0);
}
inline int __any_sync(unsigned mask, int predicate) {
  return (::itkit_emu::Ballot("__any_sync", mask, predicate != 0) & mask) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return (::itkit_emu::Ballot("__all_sync", mask, predicate != 0) & mask) == mask;
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)::itkit_emu::Ballot("__syncwarp", mask, true); }

// ---- atomics (old value returned, as on the GPU) ----------------------------------------
template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <typename T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (value > old) *address = value;
  return old;
}
template <typename T>
T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <typename T>
T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}

// ---- intrinsics -----------------------------------------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline int __float_as_int(float x) { return static_cast<int>(__float_as_uint(x)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline size_t __cvta_generic_to_shared(const void* p) { return ::itkit_emu::SharedAddressOf(p); }
