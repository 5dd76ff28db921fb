// Our 3x3x3 convolution kernel (kernels/cuda/conv3_c32.cu) emulated on the host with
// its own index math (conv3_tiles.h): the blocks' depth chunks, the ring of halo planes
// in shared memory, the weights' shared layout, every ldmatrix lane address and the
// mma.m16n8k16 fragments, each as PTX defines them (ldmatrix: thread t receives row
// t/4, elements 2(t%4) and 2(t%4)+1 of each 8x8 matrix; mma: A, B and C fragments by
// groupID = lane/4 and threadID_in_group = lane%4). The result is compared with the
// convolution computed by its definition, so a wrong address, fragment or ring slot in
// the code the GPU runs fails here, on a machine without a GPU. Also the stem
// convolution (conv3_stem.cu: few input channels) with its own walk and arithmetic
// (conv3_stem.h) against a convolution written out here.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "conv_reference.h"
#include "cuda/conv3_stem.h"
#include "cuda/conv3_tiles.h"

namespace itkit::test::ops {
namespace {

using cuda::Conv3Shape;
constexpr int C = cuda::kConv3Channels;

// x, z and y NDHWC; w ONNX [Cout][Cin][3][3][3]. y = leaky_relu(conv + b + z, 0.1).
std::vector<float> Conv3ByDefinition(const Conv3Shape& s, const std::vector<float>& x, const std::vector<float>& w,
                                     const std::vector<float>& b, const std::vector<float>& z) {
  std::vector<float> y = Conv3x3x3ByDefinition({s.n, s.d, s.h, s.w}, C, C, x, w, b, z);
  for (float& v : y) v = v >= 0.0f ? v : 0.1f * v;
  return y;
}

// Shared memory as f16 slots (held as floats), NaN until written: a read of anything
// never loaded shows in the result.
struct SharedMemory {
  std::vector<float> halves = std::vector<float>(cuda::kConv3SmemBytes / 2, std::nanf(""));
  int64_t misaligned = 0, bank_conflicts = 0;

  void Copy16(uint32_t dst, const float* src) {  // cp.async of 16 bytes (src null: zero fill)
    if (dst % 16) ++misaligned;
    for (int i = 0; i < 8; ++i) halves.at(dst / 2 + i) = src ? src[i] : 0.0f;
  }
  // ldmatrix.x4: lane l addresses row l%8 of matrix l/8; thread t receives, for each
  // matrix j, register j = elements 2(t%4), 2(t%4)+1 of row t/4.
  void LoadMatrixX4(const std::array<uint32_t, 32>& lane_address, float (&regs)[32][4][2]) {
    for (int j = 0; j < 4; ++j) {
      std::set<uint32_t> bank_groups;  // one phase: 8 rows of 16 bytes
      for (int r = 0; r < 8; ++r) {
        const uint32_t a = lane_address[static_cast<size_t>(j * 8 + r)];
        if (a % 16) ++misaligned;
        bank_groups.insert((a / 16) % 8);
      }
      bank_conflicts += 8 - static_cast<int64_t>(bank_groups.size());
      for (int t = 0; t < 32; ++t)
        for (int e = 0; e < 2; ++e)
          regs[t][j][e] = halves.at(lane_address[static_cast<size_t>(j * 8 + t / 4)] / 2 + (t % 4) * 2 + e);
    }
  }
};

// mma.m16n8k16 (row.col): A regs a0..a3 = A[g][2q..], A[g+8][2q..], A[g][2q+8..],
// A[g+8][2q+8..]; B regs b0, b1 = B[2q..][g], B[2q+8..][g]; C c0..c3 = C[g][2q..],
// C[g+8][2q..]; g = lane/4, q = lane%4.
void EmulateMma(const float (&a)[32][4][2], const float (&b)[32][4][2], int b_reg0, float (&c)[32][4]) {
  float A[16][16], B[16][8];
  for (int t = 0; t < 32; ++t) {
    const int g = t / 4, q = t % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * q + e] = a[t][0][e];
      A[g + 8][2 * q + e] = a[t][1][e];
      A[g][2 * q + 8 + e] = a[t][2][e];
      A[g + 8][2 * q + 8 + e] = a[t][3][e];
      B[2 * q + e][g] = b[t][b_reg0][e];
      B[2 * q + 8 + e][g] = b[t][b_reg0 + 1][e];
    }
  }
  for (int t = 0; t < 32; ++t) {
    const int g = t / 4, q = t % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
      for (int k = 0; k < 16; ++k) c[t][i] += A[row][k] * B[k][col];
    }
  }
}

struct Emulation {
  std::vector<float> y;
  int64_t writes = 0, misaligned = 0, bank_conflicts = 0;
};

// The kernel's walk, block by block, warp by warp, lane by lane.
Emulation EmulateConv3Kernel(const Conv3Shape& s, int num_sms, const std::vector<float>& x,
                             const std::vector<float>& w_packed, const std::vector<float>& b,
                             const std::vector<float>& z) {
  Emulation out;
  out.y.assign(x.size(), std::nanf(""));
  const cuda::Conv3Grid grid = cuda::Conv3MakeGrid(s, num_sms);
  for (int64_t block = 0; block < grid.blocks(); ++block) {
    SharedMemory sm;
    const cuda::Conv3Block blk = cuda::Conv3BlockOf(s, grid, block);
    if (blk.d_begin >= blk.d_end) continue;
    const uint32_t planes_base = cuda::kConv3WeightBytes;
    for (int e = 0; e < cuda::kConv3Taps * C * cuda::kConv3ChunksPerRow; ++e) {
      uint32_t offset = 0;
      const int64_t src = cuda::Conv3WeightSource(e, &offset);
      sm.Copy16(offset, &w_packed[static_cast<size_t>(src)]);
    }
    auto load_plane = [&](int64_t plane) {  // every thread's walk, as LoadPlane does it
      const uint32_t slot = planes_base + cuda::Conv3SlotOf(plane, blk.d_begin) * cuda::kConv3PlaneBytes;
      const int64_t base = cuda::Conv3PlaneBase(s, blk, plane);
      const bool inside = plane >= 0 && plane < s.d;
      for (int t = 0; t < cuda::kConv3Threads; ++t)
        for (cuda::Conv3HaloWalker walk(t); !walk.done(); walk.Next()) {
          uint32_t offset = 0;
          const int64_t src = walk.Source(s, blk, base, inside, &offset);
          sm.Copy16(slot + offset, src >= 0 ? &x[static_cast<size_t>(src)] : nullptr);
        }
    };
    for (int64_t p = blk.d_begin - 1; p <= blk.d_begin + 1; ++p) load_plane(p);
    for (int64_t d = blk.d_begin; d < blk.d_end; ++d) {
      if (d + 1 < blk.d_end) load_plane(d + 2);  // must not overwrite planes d-1 .. d+1
      for (int warp = 0; warp < cuda::kConv3Warps; ++warp) {
        static float acc[4][4][32][4];
        for (auto& m : acc)
          for (auto& n : m)
            for (auto& l : n)
              for (float& v : l) v = 0.0f;
        for (int kd = 0; kd < 3; ++kd) {
          const uint32_t slot = planes_base + cuda::Conv3SlotOf(d - 1 + kd, blk.d_begin) * cuda::kConv3PlaneBytes;
          for (int kh = 0; kh < 3; ++kh)
            for (int kw = 0; kw < 3; ++kw)
              for (int kk = 0; kk < 2; ++kk) {
                const int tap = (kd * 3 + kh) * 3 + kw;
                static float bf[2][32][4][2], af[32][4][2];
                for (int np = 0; np < 2; ++np) {
                  std::array<uint32_t, 32> addr{};
                  for (int l = 0; l < 32; ++l) addr[static_cast<size_t>(l)] = cuda::Conv3BLaneOffset(tap, np, kk, l);
                  sm.LoadMatrixX4(addr, bf[np]);
                }
                for (int mt = 0; mt < 4; ++mt) {
                  std::array<uint32_t, 32> addr{};
                  for (int l = 0; l < 32; ++l)
                    addr[static_cast<size_t>(l)] = slot + cuda::Conv3ALaneOffset(warp, mt, kh, kw, kk, l);
                  sm.LoadMatrixX4(addr, af);
                  for (int nt = 0; nt < 4; ++nt) EmulateMma(af, bf[nt >> 1], (nt & 1) * 2, acc[mt][nt]);
                }
              }
        }
        // The store as the kernel does it: per lane the bias of its channel pairs (from
        // row tile 0), then each pair at Conv3RowBase + Conv3FullTilePair (a tile inside
        // the width) or Conv3OutputPair (one cut short), Z read where Y is written.
        const int64_t h = blk.h0 + warp;
        const bool full = cuda::Conv3FullWidth(s, blk);
        for (int lane = 0; lane < 32; ++lane)
          for (int mt = 0; mt < 4; ++mt)
            for (int half_row = 0; half_row < 2; ++half_row)
              for (int nt = 0; nt < 4; ++nt) {
                const int64_t idx =
                    !full ? cuda::Conv3OutputPair(s, blk, d, warp, mt, nt, half_row, lane)
                    : h < s.h ? cuda::Conv3RowBase(s, blk, d, h) + cuda::Conv3FullTilePair(mt, nt, half_row, lane)
                              : -1;
                if (idx < 0) continue;
                for (int e = 0; e < 2; ++e) {
                  int voxel = 0, cout = 0;
                  cuda::Conv3AccPosition(0, nt, e, lane, &voxel, &cout);
                  const size_t at = static_cast<size_t>(idx + e);
                  const float v = acc[mt][nt][lane][half_row * 2 + e] + b[static_cast<size_t>(cout)] + z[at];
                  out.y[at] = std::isnan(out.y[at]) ? (v >= 0.0f ? v : 0.1f * v) : std::nanf("");  // twice: NaN
                  ++out.writes;
                }
              }
      }
    }
    out.misaligned += sm.misaligned;
    out.bank_conflicts += sm.bank_conflicts;
  }
  return out;
}

// The full-width store's offsets are Conv3OutputPair's wherever a tile lies inside the
// width, and a tile cut short never takes them.
TEST(CudaConv3, FullWidthStoreOffsetsAreTheOutputPairs) {
  for (const Conv3Shape& s : {Conv3Shape{2, 3, 10, 128}, Conv3Shape{1, 2, 9, 70}, Conv3Shape{1, 1, 8, 63}}) {
    const cuda::Conv3Grid grid = cuda::Conv3MakeGrid(s, 132);
    int64_t full_blocks = 0;
    for (int64_t block = 0; block < grid.blocks(); ++block) {
      const cuda::Conv3Block blk = cuda::Conv3BlockOf(s, grid, block);
      if (!cuda::Conv3FullWidth(s, blk)) {
        EXPECT_GT(blk.w0 + cuda::kConv3TileW, s.w);
        continue;
      }
      ++full_blocks;
      for (int64_t d = blk.d_begin; d < blk.d_end; ++d)
        for (int warp = 0; warp < cuda::kConv3Warps; ++warp) {
          const int64_t h = blk.h0 + warp;
          if (h >= s.h) continue;
          for (int lane = 0; lane < 32; ++lane)
            for (int mt = 0; mt < 4; ++mt)
              for (int nt = 0; nt < 4; ++nt)
                for (int half_row = 0; half_row < 2; ++half_row)
                  ASSERT_EQ(cuda::Conv3RowBase(s, blk, d, h) + cuda::Conv3FullTilePair(mt, nt, half_row, lane),
                            cuda::Conv3OutputPair(s, blk, d, warp, mt, nt, half_row, lane));
        }
    }
    EXPECT_EQ(full_blocks, s.n * ((s.h + 7) / 8) * (s.w / cuda::kConv3TileW) * grid.chunks);
  }
}

TEST(CudaConv3, GridCoversTheDepthAndFillsTheGpu) {
  // The U-Net's 128^3 level at batch 4 on an H100: 4 x 16 x 2 columns, one block per SM.
  const cuda::Conv3Grid unet = cuda::Conv3MakeGrid({4, 128, 128, 128}, 132);
  EXPECT_EQ(unet.columns, 128);
  EXPECT_EQ(unet.chunks, 1);
  // Batch 1: 32 columns, so the depth is split to fill the SMs.
  const cuda::Conv3Grid single = cuda::Conv3MakeGrid({1, 128, 128, 128}, 132);
  EXPECT_EQ(single.chunks, 4);
  EXPECT_EQ(single.planes_per_chunk, 32);
  for (const Conv3Shape& s : {Conv3Shape{1, 7, 9, 65}, Conv3Shape{3, 128, 40, 200}, Conv3Shape{1, 1, 1, 1}})
    for (int sms : {1, 7, 132}) {
      const cuda::Conv3Grid g = cuda::Conv3MakeGrid(s, sms);
      std::vector<int> covered(static_cast<size_t>(s.d), 0);
      for (int64_t chunk = 0; chunk < g.chunks; ++chunk) {
        const cuda::Conv3Block blk = cuda::Conv3BlockOf(s, g, chunk);  // column 0's chunks
        EXPECT_LT(blk.d_begin, blk.d_end) << "an empty chunk";
        for (int64_t d = blk.d_begin; d < blk.d_end; ++d) ++covered[static_cast<size_t>(d)];
      }
      for (int c : covered) EXPECT_EQ(c, 1);
    }
}

// Chunk `e` of the halo of input plane `plane` for block `b` by its definition (16-byte
// part e % 4 of halo voxel e / 4, row-major over 10 x 66 voxels from (h0 - 1, w0 - 1)):
// its shared-memory offset and its element offset in X, -1 outside the volume.
int64_t HaloSourceByDefinition(const Conv3Shape& s, const cuda::Conv3Block& b, int64_t plane, int e,
                               uint32_t* smem_offset) {
  const int voxel = e / cuda::kConv3ChunksPerRow, chunk = e % cuda::kConv3ChunksPerRow;
  *smem_offset = cuda::Conv3RowChunkOffset(static_cast<uint32_t>(voxel), static_cast<uint32_t>(chunk));
  const int64_t h = b.h0 - 1 + voxel / cuda::kConv3HaloW, w = b.w0 - 1 + voxel % cuda::kConv3HaloW;
  if (plane < 0 || plane >= s.d || h < 0 || h >= s.h || w < 0 || w >= s.w) return -1;
  return (((b.n * s.d + plane) * s.h + h) * s.w + w) * C + chunk * 8;
}

// The kernel's incremental walk over a halo plane visits every chunk exactly once, as
// the definition numbers them, with the same source and destination.
TEST(CudaConv3, HaloWalkerMatchesTheChunkNumbering) {
  const Conv3Shape s{2, 5, 20, 130};
  const cuda::Conv3Grid g = cuda::Conv3MakeGrid(s, 7);
  for (int64_t block : {int64_t{0}, g.blocks() / 2, g.blocks() - 1}) {
    const cuda::Conv3Block blk = cuda::Conv3BlockOf(s, g, block);
    for (int64_t plane : {int64_t{-1}, int64_t{0}, int64_t{4}, int64_t{5}}) {
      std::vector<int> seen(cuda::kConv3PlaneVoxels * cuda::kConv3ChunksPerRow, 0);
      const int64_t base = cuda::Conv3PlaneBase(s, blk, plane);
      for (int t = 0; t < cuda::kConv3Threads; ++t)
        for (cuda::Conv3HaloWalker walk(t); !walk.done(); walk.Next()) {
          uint32_t walked = 0, numbered = 0;
          const int64_t src = walk.Source(s, blk, base, plane >= 0 && plane < s.d, &walked);
          ASSERT_EQ(src, HaloSourceByDefinition(s, blk, plane, walk.e, &numbered)) << "chunk " << walk.e;
          ASSERT_EQ(walked, numbered) << "chunk " << walk.e;
          ++seen[static_cast<size_t>(walk.e)];
        }
      for (int n : seen) ASSERT_EQ(n, 1);
    }
  }
}

TEST(CudaConv3, KernelEmulationMatchesTheDefinition) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Case {
    Conv3Shape s;
    int num_sms;
  };
  const Case cases[] = {
      {{1, 3, 10, 70}, 2},  // partial row and column tiles; 4 columns on 2 SMs
      {{2, 5, 8, 64}, 8},   // exact tiles; depth split in chunks of 2, 2 and 1
      {{1, 2, 3, 5}, 1},    // smaller than a tile in every direction
      {{1, 9, 8, 64}, 1},   // one block through 9 planes: the ring wraps twice
  };
  for (const Case& c : cases) {
    const Conv3Shape& s = c.s;
    SCOPED_TRACE(::testing::Message() << "shape " << s.n << "x" << s.d << "x" << s.h << "x" << s.w << " on "
                                      << c.num_sms << " SMs");
    const size_t count = static_cast<size_t>(s.n * s.d * s.h * s.w * C);
    std::vector<float> x(count), z(count), w(static_cast<size_t>(C * C * 27)), b(C);
    for (float& v : x) v = u(rng);
    for (float& v : z) v = u(rng);
    for (float& v : w) v = u(rng) * 0.1f;
    for (float& v : b) v = u(rng);
    const std::vector<float> w_packed = PackCoutTapCin(w, C, C);  // the cuDNN path's packing
    const Emulation got = EmulateConv3Kernel(s, c.num_sms, x, w_packed, b, z);
    const std::vector<float> want = Conv3ByDefinition(s, x, w, b, z);
    EXPECT_EQ(got.writes, static_cast<int64_t>(count)) << "every output written exactly once";
    EXPECT_EQ(got.misaligned, 0) << "cp.async and ldmatrix need 16-byte aligned shared addresses";
    EXPECT_EQ(got.bank_conflicts, 0) << "the swizzle should keep each ldmatrix phase in 8 bank groups";
    double worst = 0;
    for (size_t i = 0; i < count; ++i)
      worst = std::isnan(got.y[i]) ? INFINITY : std::max(worst, static_cast<double>(std::fabs(got.y[i] - want[i])));
    EXPECT_LE(worst, 1e-4);
  }
}

// ---- the stem convolution (conv3_stem.h) ------------------------------------------------

// The kernel's items (one thread each), its StemAccumulate and its store loop (voxels
// past the row's end skipped), with x NDHWC of `cin` channels and w packed
// [Cout][tap][Cin] as the convolution's NDHWC path packs it. Counts each output's writes.
template <int CIN, int COUT>
std::vector<float> EmulateStem(const cuda::StemShape& s, const std::vector<float>& x, const std::vector<float>& w,
                               std::vector<int>* writes) {
  std::vector<float> y(static_cast<size_t>(s.n * s.d * s.h * s.w * COUT), NAN);
  writes->assign(y.size(), 0);
  const auto load = [&](int64_t offset) { return x[static_cast<size_t>(offset)]; };
  const auto weight = [&](int tap, int ci, int co) {
    return w[static_cast<size_t>((co * cuda::kStemTaps + tap) * CIN + ci)];
  };
  for (int64_t i = 0; i < cuda::StemItems(s); ++i) {
    const cuda::StemItem it = cuda::StemItemOf<uint32_t>(s, i);  // as the kernel walks
    const cuda::StemItem wide = cuda::StemItemOf<int64_t>(s, i);
    EXPECT_TRUE(it.n == wide.n && it.z == wide.z && it.y == wide.y && it.x0 == wide.x0) << "item " << i;
    float acc[cuda::kStemVoxels][COUT];
    cuda::StemAccumulate<CIN, COUT>(s, it, load, weight, acc);
    for (int v = 0; v < cuda::kStemVoxels; ++v) {
      if (it.x0 + v >= s.w) break;
      for (int co = 0; co < COUT; ++co) {
        const auto o = static_cast<size_t>(cuda::StemOffset(s, it.n, it.z, it.y, it.x0 + v, COUT, co));
        y[o] = acc[v][co];
        ++(*writes)[o];
      }
    }
  }
  return y;
}

template <int CIN, int COUT>
void CheckStem(const cuda::StemShape& s, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << CIN << " -> " << COUT << " channels, " << s.n << "x" << s.d << "x" << s.h
                                    << "x" << s.w);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.n * s.d * s.h * s.w * CIN)), w(static_cast<size_t>(COUT * CIN * 27));
  for (float& v : x) v = u(rng);
  for (float& v : w) v = u(rng);
  const std::vector<float> want = Conv3x3x3ByDefinition({s.n, s.d, s.h, s.w}, CIN, COUT, x, w);
  const std::vector<float> packed = PackCoutTapCin(w, COUT, CIN);
  std::vector<int> writes;
  const std::vector<float> got = EmulateStem<CIN, COUT>(s, x, packed, &writes);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(writes[i], 1) << "output " << i << " must be written exactly once";
    worst = std::max(worst, static_cast<double>(std::fabs(got[i] - want[i])));
  }
  EXPECT_LE(worst, 1e-4);
}

TEST(CudaConv3Stem, WalkAndSumsMatchTheDefinition) {
  std::mt19937 rng(21);
  // Odd widths (a last item of one voxel), a width of one, a depth of one, two samples.
  CheckStem<1, 32>({2, 3, 4, 7, 1, 32}, rng);
  CheckStem<1, 16>({1, 1, 3, 1, 1, 16}, rng);
  CheckStem<2, 32>({1, 2, 5, 6, 2, 32}, rng);
  CheckStem<3, 16>({1, 4, 2, 5, 3, 16}, rng);
  CheckStem<4, 32>({2, 2, 3, 3, 4, 32}, rng);
}

}  // namespace
}  // namespace itkit::test::ops
