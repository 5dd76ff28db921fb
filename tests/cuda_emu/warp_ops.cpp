// Warp-collective operations under the emulator: shuffles, votes, and the two PTX
// tensor-core instructions conv3_c32.cu uses, with the data layouts of the PTX ISA
// ("Warp-level matrix load instruction: ldmatrix" and "Matrix fragments for
// mma.m16n8k16 with floating point type"), written from the specification, not from
// the kernel, so that a kernel's wrong assumption about a layout fails here.
#include <cuda_fp16.h>

#include <cstring>
#include <string>

#include "itkit_emu/device.h"

namespace itkit_emu {

void ShuffleCombine(const Slot* in, Slot* out, uint32_t mask) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    int src = 0;
    std::memcpy(&src, in[lane].bytes + 48, sizeof src);
    if (src < 0 || src > 31 || !(mask >> src & 1u))
      Fail("shuffle: lane " + std::to_string(lane) + " reads lane " + std::to_string(src) +
           ", which is not in the mask (undefined on the GPU)");
    out[lane] = in[src];
  }
}

namespace {
void BallotCombine(const Slot* in, Slot* out, uint32_t mask) {
  uint32_t votes = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((mask >> lane & 1u) && in[lane].bytes[0]) votes |= 1u << lane;
  for (int lane = 0; lane < 32; ++lane)
    if (mask >> lane & 1u) std::memcpy(out[lane].bytes, &votes, sizeof votes);
}

void NoDataCombine(const Slot*, Slot*, uint32_t) {}
}  // namespace

uint32_t Ballot(const char* what, uint32_t mask, bool predicate) {
  Slot s{};
  s.bytes[0] = predicate ? 1 : 0;
  Slot out;
  WarpCollective(what, mask, s, &out, BallotCombine);
  uint32_t votes;
  std::memcpy(&votes, out.bytes, sizeof votes);
  return votes;
}

void WarpConverged(const char* what) {
  Slot s{}, out;
  WarpCollective(what, 0xffffffffu, s, &out, NoDataCombine);
}

// ---- shared-memory addresses (the dynamic shared memory only) -------------------------

uint32_t SharedAddressOf(const void* p) {
  const auto* c = static_cast<const unsigned char*>(p);
  const unsigned char* base = DynamicSharedBase();
  if (c < base || c > base + DynamicSharedBytes())
    Fail("__cvta_generic_to_shared: pointer outside the dynamic shared memory (the emulator knows no other)");
  return static_cast<uint32_t>(c - base);
}

void* SharedPointer(uint32_t address, size_t bytes) {
  if (address + bytes > DynamicSharedBytes())
    Fail("shared-memory access at " + std::to_string(address) + " (+" + std::to_string(bytes) +
         " bytes) beyond the block's " + std::to_string(DynamicSharedBytes()) + " bytes");
  return DynamicSharedBase() + address;
}

// ---- ldmatrix.sync.aligned.m8n8.x4.shared.b16 ----------------------------------------
// Lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i (16 bytes each, 16-byte
// aligned). Lane t receives, in register i, row t/4 of matrix i, elements 2(t%4) and
// 2(t%4)+1 (the lower-numbered element in the lower half).

namespace {
void LdMatrixX4Combine(const Slot* in, Slot* out, uint32_t) {
  uint32_t address[32];
  for (int lane = 0; lane < 32; ++lane) {
    std::memcpy(&address[lane], in[lane].bytes, sizeof(uint32_t));
    if (address[lane] % 16 != 0) Fail("ldmatrix: row address " + std::to_string(address[lane]) + " not 16-byte aligned");
  }
  for (int t = 0; t < 32; ++t) {
    uint32_t r[4];
    for (int i = 0; i < 4; ++i) {
      const auto* row = static_cast<const unsigned char*>(SharedPointer(address[8 * i + t / 4], 16));
      std::memcpy(&r[i], row + 4 * (t % 4), sizeof(uint32_t));
    }
    std::memcpy(out[t].bytes, r, sizeof r);
  }
}

// ---- mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 --------------------------------
// groupID g = lane / 4, threadID_in_group q = lane % 4:
//  A (16x16, row): a0,a1: (g, 2q..2q+1)  a2,a3: (g+8, 2q..)  a4,a5: (g, 2q+8..)  a6,a7: (g+8, 2q+8..)
//  B (16x8, col):  b0,b1: (k = 2q..2q+1, n = g)  b2,b3: (k = 2q+8.., n = g)
//  C, D (16x8):    c0,c1: (g, 2q..2q+1)  c2,c3: (g+8, 2q..2q+1)
struct MmaIn {
  uint32_t a[4], b[2];
  float c[4];
};

float HalfAt(uint32_t pair, int which) {
  __half_raw raw;
  raw.x = static_cast<unsigned short>(which ? pair >> 16 : pair & 0xffffu);
  return __half2float(__half(raw));
}

void MmaCombine(const Slot* in, Slot* out, uint32_t) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    MmaIn m;
    std::memcpy(&m, in[lane].bytes, sizeof m);
    const int g = lane / 4, q = lane % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * q + e] = HalfAt(m.a[0], e);
      A[g + 8][2 * q + e] = HalfAt(m.a[1], e);
      A[g][2 * q + 8 + e] = HalfAt(m.a[2], e);
      A[g + 8][2 * q + 8 + e] = HalfAt(m.a[3], e);
      B[2 * q + e][g] = HalfAt(m.b[0], e);
      B[2 * q + 8 + e][g] = HalfAt(m.b[1], e);
      C[g][2 * q + e] = m.c[e];
      C[g + 8][2 * q + e] = m.c[2 + e];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, q = lane % 4;
    float d[4];
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
      float sum = C[row][col];
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];  // f16 products are exact in f32
      d[i] = sum;
    }
    std::memcpy(out[lane].bytes, d, sizeof d);
  }
}
}  // namespace

void LdMatrixX4(uint32_t (&r)[4], uint32_t shared_address) {
  Slot s{}, out;
  std::memcpy(s.bytes, &shared_address, sizeof shared_address);
  WarpCollective("ldmatrix.x4", 0xffffffffu, s, &out, LdMatrixX4Combine);
  std::memcpy(r, out.bytes, sizeof r);
}

void MmaM16N8K16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  MmaIn m{{a[0], a[1], a[2], a[3]}, {b0, b1}, {c[0], c[1], c[2], c[3]}};
  Slot s{}, out;
  std::memcpy(s.bytes, &m, sizeof m);
  WarpCollective("mma.m16n8k16", 0xffffffffu, s, &out, MmaCombine);
  std::memcpy(c, out.bytes, sizeof c);
}

}  // namespace itkit_emu
