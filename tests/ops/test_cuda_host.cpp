// Host-side checks of the CUDA backend's code that need no GPU: the scalar math the
// kernels run (kernel_math.h: Resize coordinates against the CPU reference's
// ComputeAxisTaps, pooling tap counts, Welford merges, activations against the CPU's;
// fused_math.h: every FusedElementwise opcode against the CPU kernel),
// the strided-copy planning (layout_utils), the algorithm cache file format, the
// labels-only accumulator's ring of slices (slice_ring) and the strided ConvTranspose
// kernel's GEMM-to-volume index math (strided_transpose.h).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "cpu/cpu_backend.h"
#include "cpu/fused_activation.h"
#include "cpu/resize_kernels.h"
#include "cuda/fused_math.h"
#include "cuda/kernel_math.h"
#include "cuda/layout_utils.h"
#include "cuda/slice_ring.h"
#include "cuda/strided_transpose.h"
#include "cuda/tuning_cache.h"
#include "itkit/op_table.h"
#if ITKIT_HAVE_CUDA
#include "cuda/cublas_api.h"
#include "cuda/cudnn_api.h"
#include "cuda/shared_library.h"
#include "itkit/cuda_accumulator.h"
#endif

namespace itkit::cuda {
namespace {

#if ITKIT_HAVE_CUDA
// cuDNN and cuBLAS are opened with dlopen (cudnn_api.h, cublas_api.h). Loading and
// these two calls need no GPU, so a broken symbol table shows up on every CUDA build.
TEST(CudaLibraries, CudnnAndCublasLoadWithoutAGpu) {
  auto dnn_api = LoadCudnn();
  ASSERT_TRUE(dnn_api.ok()) << dnn_api.status().message();
  EXPECT_GE((*dnn_api)->GetVersion(), size_t{90000});
  EXPECT_STREQ(CudnnStatusText(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM");
  auto blas_api = Cublas();
  ASSERT_TRUE(blas_api.ok()) << blas_api.status().message();
  EXPECT_STREQ(CublasStatusText(CUBLAS_STATUS_NOT_INITIALIZED), "the library was not initialized");
}

// A library that is nowhere: an error naming it (and the loader's reason), not a crash.
TEST(CudaLibraries, MissingLibraryIsAnError) {
  auto lib = OpenSharedLibrary("libitkit-absent.so.7", "/nonexistent-itkit-dir", "libabsent");
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(lib.status().message().find("libabsent could not be loaded (libitkit-absent.so.7: "), std::string::npos)
      << lib.status().message();
  EXPECT_EQ(lib.status().message().find("not found)"), std::string::npos) << "the loader's own error is kept";
}
#endif

// Interpolates a random 1-D signal with the GPU's taps and with the CPU reference's.
TEST(CudaKernelMath, ResizeTapsMatchCpuReference) {
  std::mt19937 rng(42);
  const CoordMode modes[] = {CoordMode::kHalfPixel, CoordMode::kPytorchHalfPixel, CoordMode::kAlignCorners,
                             CoordMode::kAsymmetric, CoordMode::kTfHalfPixelForNn};
  const cpu::ResizeParams::Coord cpu_modes[] = {
      cpu::ResizeParams::Coord::kHalfPixel, cpu::ResizeParams::Coord::kPytorchHalfPixel,
      cpu::ResizeParams::Coord::kAlignCorners, cpu::ResizeParams::Coord::kAsymmetric,
      cpu::ResizeParams::Coord::kTfHalfPixelForNn};
  const NearestMode nearest[] = {NearestMode::kRoundPreferFloor, NearestMode::kRoundPreferCeil, NearestMode::kFloor,
                                 NearestMode::kCeil};
  const cpu::ResizeParams::Nearest cpu_nearest[] = {
      cpu::ResizeParams::Nearest::kRoundPreferFloor, cpu::ResizeParams::Nearest::kRoundPreferCeil,
      cpu::ResizeParams::Nearest::kFloor, cpu::ResizeParams::Nearest::kCeil};
  int checked = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t in = std::uniform_int_distribution<int64_t>(1, 12)(rng);
    const bool by_size = trial % 2;
    const double scales[] = {2.0, 0.5, 1.5, 3.0, 1.0, 0.75};
    int64_t out = 0;
    double scale = 0;
    if (by_size) {
      out = std::uniform_int_distribution<int64_t>(1, 20)(rng);
      scale = static_cast<double>(out) / static_cast<double>(in);
    } else {
      scale = static_cast<double>(static_cast<float>(scales[trial % 6]));
      out = static_cast<int64_t>(std::floor(static_cast<double>(in) * scale));
      if (out == 0) continue;
    }
    const int m = trial % 5, nm = (trial / 5) % 4;
    for (bool linear : {false, true}) {
      cpu::ResizeParams p;
      p.mode = linear ? cpu::ResizeParams::Mode::kLinear : cpu::ResizeParams::Mode::kNearest;
      p.coord = cpu_modes[m];
      p.nearest = cpu_nearest[nm];
      p.in = {in};
      p.out = {out};
      p.scales = {scale};
      std::vector<double> signal(static_cast<size_t>(in));
      for (double& v : signal) v = std::uniform_real_distribution<double>(-1, 1)(rng);
      for (int64_t o = 0; o < out; ++o) {
        const cpu::AxisTaps t = cpu::ComputeAxisTaps(p, 0, o);
        double expected = 0;
        for (int k = 0; k < t.count; ++k) expected += t.weight[k] * signal[static_cast<size_t>(t.index[k])];
        const double coord = ResizeSourceCoord(o, modes[m], scale, in, scale * static_cast<double>(in));
        double got = 0;
        if (linear) {
          const LinearTaps lt = LinearTapsFor(coord, in);
          got = (1.0 - lt.w1) * signal[static_cast<size_t>(lt.i0)] + lt.w1 * signal[static_cast<size_t>(lt.i1)];
        } else {
          got = signal[static_cast<size_t>(NearestIndex(coord, nearest[nm], in))];
        }
        ASSERT_NEAR(got, expected, 1e-6) << "in " << in << " out " << out << " scale " << scale << " mode " << m
                                         << " nearest " << nm << " linear " << linear << " at " << o;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(CudaKernelMath, PoolTapCounts) {
  // in 5, k 3, stride 2, pads (1, 1): windows [-1,1], [1,3], [3,5].
  EXPECT_EQ(PoolTapsFor(0, 5, 3, 2, 1, 1, 1).valid, 2);
  EXPECT_EQ(PoolTapsFor(0, 5, 3, 2, 1, 1, 1).padded, 3);
  EXPECT_EQ(PoolTapsFor(1, 5, 3, 2, 1, 1, 1).valid, 3);
  EXPECT_EQ(PoolTapsFor(2, 5, 3, 2, 1, 1, 1).valid, 2);
  EXPECT_EQ(PoolTapsFor(2, 5, 3, 2, 1, 1, 1).padded, 3);
  // ceil_mode overhang: in 6, k 3, s 2, no pads, output 3 -> window [4, 6] has one tap past the end.
  EXPECT_EQ(PoolTapsFor(2, 6, 3, 2, 1, 0, 0).valid, 2);
  EXPECT_EQ(PoolTapsFor(2, 6, 3, 2, 1, 0, 0).padded, 2);
  // Dilation 2: taps at -1, 1, 3 of in 4 with pad 1.
  EXPECT_EQ(PoolTapsFor(0, 4, 3, 1, 2, 1, 1).valid, 2);
}

TEST(CudaKernelMath, WelfordMergeIsStable) {
  std::mt19937 rng(1);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  std::vector<float> data(100000);
  for (float& v : data) v = 1000.0f + noise(rng);  // large mean, tiny variance
  double mean = 0;
  for (float v : data) mean += v;
  mean /= static_cast<double>(data.size());
  double var = 0;
  for (float v : data) var += (v - mean) * (v - mean);
  var /= static_cast<double>(data.size());
  // 97 uneven partials merged pairwise, as the kernels merge blocks.
  std::vector<Welford> parts(97);
  for (size_t i = 0; i < data.size(); ++i) WelfordAdd(parts[(i * 7919) % parts.size()], data[i]);
  Welford all;
  for (const Welford& p : parts) all = WelfordMerge(all, p);
  EXPECT_EQ(all.count, static_cast<float>(data.size()));
  EXPECT_NEAR(all.mean, mean, 1e-3);
  EXPECT_NEAR(all.m2 / all.count, var, 0.02 * var);
}

TEST(CudaKernelMath, ActivationsMatchCpu) {
  const std::pair<Act, cpu::ActKind> kinds[] = {{Act::kNone, cpu::ActKind::kNone},       {Act::kRelu, cpu::ActKind::kRelu},
                                                {Act::kLeakyRelu, cpu::ActKind::kLeakyRelu}, {Act::kSigmoid, cpu::ActKind::kSigmoid},
                                                {Act::kTanh, cpu::ActKind::kTanh},       {Act::kGelu, cpu::ActKind::kGelu}};
  for (const auto& [gpu, cpu_kind] : kinds) {
    cpu::Activation a;
    a.kind = cpu_kind;
    a.alpha = 0.13f;
    for (float x = -6.0f; x <= 6.0f; x += 0.37f)
      EXPECT_NEAR(ApplyAct(x, gpu, 0.13f), cpu::ApplyActivation(a, x), 1e-6f) << static_cast<int>(gpu) << " at " << x;
    // NaN stays NaN in every activation, as in torch (relu(nan) = nan), on both sides,
    // the CPU's in-place loop included.
    const float nan = std::nanf("");
    float in_place = nan;
    cpu::ApplyActivation(a, &in_place, 1);
    EXPECT_TRUE(std::isnan(ApplyAct(nan, gpu, 0.13f))) << static_cast<int>(gpu);
    EXPECT_TRUE(std::isnan(cpu::ApplyActivation(a, nan))) << static_cast<int>(gpu);
    EXPECT_TRUE(std::isnan(in_place)) << static_cast<int>(gpu);
  }
}

// Each opcode of itkit.FusedElementwise as the GPU computes it (FusedOp) against the
// CPU kernel running a one-instruction program, over values that cover both branches.
TEST(CudaKernelMath, FusedElementwiseOpsMatchCpu) {
  using fused::OpCode;
  std::vector<float> a, b;
  for (float x = -4.0f; x <= 4.0f; x += 0.173f) {
    for (float y : {-2.5f, -0.7f, 0.3f, 1.9f}) {
      a.push_back(x);
      b.push_back(y);
    }
  }
  const int64_t n = static_cast<int64_t>(a.size());
  const Tensor ta = Tensor::FromVector(a, {n}).value(), tb = Tensor::FromVector(b, {n}).value();
  auto backend = CreateCpuBackend();
  int checked = 0;
  for (int64_t code = 0; code < 64; ++code) {
    if (!fused::IsValidOpCode(code)) continue;
    const OpCode op = static_cast<OpCode>(code);
    const bool binary = fused::IsBinary(op);
    const float p = op == OpCode::kClip ? -0.6f : 0.37f, q = op == OpCode::kClip ? 1.3f : 1.2f;
    Node node;
    node.domain = kItkitDomain;
    node.op_type = "FusedElementwise";
    node.inputs = binary ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{"a"};
    node.outputs = {"y"};
    const int64_t first = binary ? 2 : 1;
    node.attrs.SetInts("program", {code, first, 0, binary ? 1 : 0});
    node.attrs.SetFloats("immediates", {p, q});
    NodeSignature sig;
    sig.node = &node;
    sig.inputs = {ValueDesc{DType::kF32, {n}, nullptr}};
    if (binary) sig.inputs.push_back(ValueDesc{DType::kF32, {n}, nullptr});
    sig.outputs = {ValueDesc{DType::kF32, {n}, nullptr}};
    auto kernel = backend->CreateKernel(sig);
    ASSERT_TRUE(kernel.ok()) << kernel.status().ToString();
    Tensor y = Tensor::Allocate(DType::kF32, {n}).value();
    KernelContext kc;
    kc.inputs = {&ta};
    if (binary) kc.inputs.push_back(&tb);
    kc.outputs = {&y};
    ASSERT_TRUE((*kernel)->Run(kc).ok());
    for (int64_t i = 0; i < n; ++i) {
      const float x = a[static_cast<size_t>(i)], z = b[static_cast<size_t>(i)];
      if ((op == OpCode::kLog || op == OpCode::kSqrt) && x <= 0.0f) continue;  // NaN / -inf on both
      if (op == OpCode::kPow && x < 0.0f) continue;
      const float cpu = y.data<float>()[i], gpu = FusedOp(op, x, z, p, q);
      EXPECT_NEAR(gpu, cpu, 2e-6f * std::max(1.0f, std::fabs(cpu)))
          << fused::OpCodeName(op) << " at " << x << ", " << z;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 31);
}

// ---- strided planning ---------------------------------------------------------------

TEST(CudaLayout, CollapsePreservesOffsets) {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 300; ++trial) {
    const int rank = std::uniform_int_distribution<int>(1, 6)(rng);
    Shape out, a, b;
    for (int d = 0; d < rank; ++d) {
      const int64_t n = std::uniform_int_distribution<int64_t>(1, 4)(rng);
      out.push_back(n);
      a.push_back(rng() % 3 == 0 ? 1 : n);
      b.push_back(rng() % 3 == 0 ? 1 : n);
    }
    if (rng() % 2) a.erase(a.begin());  // lower-rank operand
    StridedPlan plan;
    plan.dims = out;
    plan.strides = {BroadcastStrides(a, out), BroadcastStrides(b, out)};
    const StridedPlan collapsed = Collapse(plan);
    EXPECT_LE(collapsed.dims.size(), plan.dims.size());
    const int64_t n = ElementCount(out);
    for (int64_t i = 0; i < n; ++i)
      for (size_t op = 0; op < 2; ++op)
        ASSERT_EQ(OffsetOf(collapsed, op, i), OffsetOf(plan, op, i)) << "trial " << trial << " element " << i;
  }
  // Same shapes collapse to one axis; a per-channel operand to three.
  StridedPlan same;
  same.dims = {2, 3, 4, 5};
  same.strides = {ContiguousStrides(same.dims), ContiguousStrides(same.dims)};
  EXPECT_EQ(Collapse(same).dims, (std::vector<int64_t>{120}));
  StridedPlan channel;
  channel.dims = {2, 3, 4, 5, 6};
  channel.strides = {ContiguousStrides(channel.dims), BroadcastStrides({1, 3, 1, 1, 1}, channel.dims)};
  EXPECT_EQ(Collapse(channel).dims, (std::vector<int64_t>{2, 3, 120}));
}

// The GPU pools' max (kernel_math.h) keeps NaN like the CPU's and torch's max pooling.
TEST(CudaKernelMath, MaxKeepingNaN) {
  const float nan = std::nanf("");
  EXPECT_EQ(MaxKeepingNaN(1.0f, 2.0f), 2.0f);
  EXPECT_EQ(MaxKeepingNaN(2.0f, 1.0f), 2.0f);
  EXPECT_EQ(MaxKeepingNaN(-3.0f, -3.0f), -3.0f);
  EXPECT_TRUE(std::isnan(MaxKeepingNaN(nan, 2.0f)));
  EXPECT_TRUE(std::isnan(MaxKeepingNaN(2.0f, nan)));
  EXPECT_TRUE(std::isnan(MaxKeepingNaN(-3.4e38f, nan)));
  float acc = -3.4e38f;  // a reduction over [1, NaN, 5] in any order stays NaN
  for (float v : {1.0f, nan, 5.0f}) acc = MaxKeepingNaN(acc, v);
  EXPECT_TRUE(std::isnan(acc));
}

// ---- the labels-only accumulator's ring of slices ------------------------------------------

bool SameRuns(const std::vector<SliceRun>& got, const std::vector<SliceRun>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].z != want[i].z || got[i].slot != want[i].slot || got[i].count != want[i].count) return false;
  return true;
}

// ---- strided ConvTranspose: the kernel's tile walk, emulated on the host ----------------

// ONNX ConvTranspose by its definition (every input voxel scatters kernel taps into
// Y at d * stride + i), NCDHW, for the no-padding, no-dilation, group-1 case.
std::vector<float> ConvTransposeByDefinition(const StridedTransposeShape& s, const std::vector<float>& x,
                                             const std::vector<float>& w, const std::vector<float>& b) {
  const int64_t D = s.in[0], H = s.in[1], W = s.in[2];
  const int64_t OD = D * s.k[0], OH = H * s.k[1], OW = W * s.k[2];
  std::vector<float> y(static_cast<size_t>(s.n * s.cout * OD * OH * OW));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t co = 0; co < s.cout; ++co)
      for (int64_t v = 0; v < OD * OH * OW; ++v) y[static_cast<size_t>((n * s.cout + co) * OD * OH * OW + v)] = b[co];
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t d = 0; d < D; ++d)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t x_w = 0; x_w < W; ++x_w) {
            const float xv = x[static_cast<size_t>((((n * s.cin + ci) * D + d) * H + h) * W + x_w)];
            for (int64_t co = 0; co < s.cout; ++co)
              for (int64_t i = 0; i < s.k[0]; ++i)
                for (int64_t j = 0; j < s.k[1]; ++j)
                  for (int64_t l = 0; l < s.k[2]; ++l) {
                    const float wv = w[static_cast<size_t>((((ci * s.cout + co) * s.k[0] + i) * s.k[1] + j) * s.k[2] + l)];
                    const int64_t od = d * s.k[0] + i, oh = h * s.k[1] + j, ow = x_w * s.k[2] + l;
                    y[static_cast<size_t>((((n * s.cout + co) * OD + od) * OH + oh) * OW + ow)] += xv * wv;
                  }
          }
  return y;
}

// The GPU kernel's walk (conv_transpose_strided.cu): 64x64 tiles of the GEMM, K in
// steps of 32 with out-of-range rows, columns and K zeroed, each tile element stored at
// RowBase(row) + ColumnOffset(col) in NDHWC Y, which starts as NaN: an element never
// written, or written twice, shows.
std::vector<float> StridedTransposeTileWalk(const StridedTransposeShape& s, const std::vector<float>& x_ndhwc,
                                            const std::vector<float>& w_packed, const std::vector<float>& b,
                                            int64_t* writes) {
  const int64_t rows = StridedTransposeRows(s), cols = StridedTransposeCols(s), K = s.cin;
  std::vector<float> y(static_cast<size_t>(rows * cols), std::nanf(""));
  *writes = 0;
  for (int64_t row0 = 0; row0 < rows; row0 += 64)
    for (int64_t col0 = 0; col0 < cols; col0 += 64) {
      float acc[64][64] = {};
      for (int64_t k0 = 0; k0 < K; k0 += 32)
        for (int r = 0; r < 64; ++r)
          for (int c = 0; c < 64; ++c)
            for (int kk = 0; kk < 32; ++kk) {
              const int64_t row = row0 + r, col = col0 + c, kg = k0 + kk;
              const float a = row < rows && kg < K ? x_ndhwc[static_cast<size_t>(row * K + kg)] : 0.0f;
              const float bw = kg < K && col < cols ? w_packed[static_cast<size_t>(kg * cols + col)] : 0.0f;
              acc[r][c] += a * bw;
            }
      for (int r = 0; r < 64; ++r)
        for (int c = 0; c < 64; ++c) {
          const int64_t row = row0 + r, col = col0 + c;
          if (row >= rows || col >= cols) continue;
          float& out = y[static_cast<size_t>(StridedTransposeRowBase(s, row) + StridedTransposeColumnOffset(s, col))];
          out = std::isnan(out) ? acc[r][c] + b[static_cast<size_t>(col % s.cout)] : std::nanf("");
          ++*writes;
        }
    }
  return y;
}

TEST(CudaStridedTranspose, TileWalkMatchesTheDefinition) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Case {
    StridedTransposeShape s;
    bool vector_loads;
  };
  auto shape = [](int64_t n, int64_t cin, int64_t cout, std::array<int64_t, 3> in, std::array<int64_t, 3> k) {
    StridedTransposeShape s;
    s.n = n;
    s.cin = cin;
    s.cout = cout;
    for (int a = 0; a < 3; ++a) {
      s.in[a] = in[static_cast<size_t>(a)];
      s.k[a] = k[static_cast<size_t>(a)];
    }
    return s;
  };
  const Case cases[] = {
      {shape(2, 64, 32, {3, 4, 5}, {2, 2, 2}), true},   // nnU-Net's up-convolution; rows not a tile multiple
      {shape(1, 40, 16, {2, 3, 3}, {1, 2, 2}), true},   // anisotropic; K = 40: a partial K step
      {shape(1, 3, 5, {2, 2, 3}, {2, 2, 2}), false},    // odd channels: element-wise loads, single stores
      {shape(2, 8, 4, {1, 5, 7}, {1, 3, 2}), true},     // 2-D as 3-D with a leading 1; 6 taps x 4 channels
      {shape(1, 16, 70, {1, 1, 9}, {1, 1, 2}), false},  // 1-D; columns (140) not a multiple of 8
  };
  for (const Case& c : cases) {
    const StridedTransposeShape& s = c.s;
    SCOPED_TRACE(::testing::Message() << "cin " << s.cin << " cout " << s.cout << " in " << s.in[0] << "x" << s.in[1]
                                      << "x" << s.in[2] << " k " << s.k[0] << "x" << s.k[1] << "x" << s.k[2]);
    EXPECT_EQ(StridedTransposeVectorLoads(s), c.vector_loads);
    const int64_t S = s.in[0] * s.in[1] * s.in[2], taps = StridedTransposeTaps(s);
    std::vector<float> x(static_cast<size_t>(s.n * s.cin * S)), w(static_cast<size_t>(s.cin * s.cout * taps)),
        b(static_cast<size_t>(s.cout));
    for (float& v : x) v = u(rng);
    for (float& v : w) v = u(rng);
    for (float& v : b) v = u(rng);
    // NCDHW -> NDHWC, ONNX [Cin][Cout][taps] -> [Cin][taps][Cout] (the cuDNN path's packing).
    std::vector<float> x_ndhwc(x.size()), w_packed(w.size());
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t ci = 0; ci < s.cin; ++ci)
        for (int64_t v = 0; v < S; ++v)
          x_ndhwc[static_cast<size_t>((n * S + v) * s.cin + ci)] = x[static_cast<size_t>((n * s.cin + ci) * S + v)];
    for (int64_t ci = 0; ci < s.cin; ++ci)
      for (int64_t co = 0; co < s.cout; ++co)
        for (int64_t t = 0; t < taps; ++t)
          w_packed[static_cast<size_t>((ci * taps + t) * s.cout + co)] = w[static_cast<size_t>((ci * s.cout + co) * taps + t)];
    // The kernel's half2 stores (Cout even): a pair starting at an even column is one
    // tap's neighbouring channels, so its second element is the next one in Y.
    if (s.cout % 2 == 0) {
      for (int64_t col = 0; col + 1 < StridedTransposeCols(s); col += 2) {
        ASSERT_EQ(StridedTransposeColumnOffset(s, col + 1), StridedTransposeColumnOffset(s, col) + 1) << "col " << col;
      }
    }
    int64_t writes = 0;
    const std::vector<float> got = StridedTransposeTileWalk(s, x_ndhwc, w_packed, b, &writes);
    const std::vector<float> want = ConvTransposeByDefinition(s, x, w, b);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(writes, static_cast<int64_t>(want.size()));
    const int64_t OS = S * taps;
    double worst = 0;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t co = 0; co < s.cout; ++co)
        for (int64_t v = 0; v < OS; ++v) {
          const float g = got[static_cast<size_t>((n * OS + v) * s.cout + co)];
          const float e = want[static_cast<size_t>((n * s.cout + co) * OS + v)];
          worst = std::isnan(g) ? INFINITY : std::max(worst, static_cast<double>(std::fabs(g - e)));
        }
    EXPECT_LE(worst, 1e-4);
  }
}

TEST(CudaSliceRing, FinalisesTheSlicesBelowEachWindowInRingSlots) {
  SliceRing ring(10, 4);  // slices 0..9, 4 held: slice z in slot z % 4
  auto runs = ring.Admit(0, 4);
  ASSERT_TRUE(runs.ok());
  EXPECT_TRUE(runs->empty());
  runs = ring.Admit(2, 6);  // slices 0, 1 are final: slots 0, 1
  ASSERT_TRUE(runs.ok());
  EXPECT_TRUE(SameRuns(*runs, {{0, 0, 2}}));
  runs = ring.Admit(2, 6);  // same start again (another window of the same z row)
  ASSERT_TRUE(runs.ok());
  EXPECT_TRUE(runs->empty());
  runs = ring.Admit(6, 10);  // slices 2..5: slots 2, 3, then the ring wraps to 0, 1
  ASSERT_TRUE(runs.ok());
  EXPECT_TRUE(SameRuns(*runs, {{2, 2, 2}, {4, 0, 2}}));
  EXPECT_EQ(ring.frontier(), 6);
  EXPECT_TRUE(SameRuns(ring.Finish(), {{6, 2, 2}, {8, 0, 2}}));
  EXPECT_TRUE(ring.Finish().empty());
  ring.Reset();
  EXPECT_EQ(ring.frontier(), 0);
}

TEST(CudaSliceRing, RefusesWindowsOutOfOrderOrDeeperThanTheRing) {
  SliceRing ring(10, 4);
  ASSERT_TRUE(ring.Admit(5, 9).ok());
  auto late = ring.Admit(3, 7);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(late.status().message().find("non-decreasing z"), std::string::npos) << late.status().message();
  SliceRing deep(10, 4);
  EXPECT_EQ(deep.Admit(0, 5).status().code(), StatusCode::kInvalidArgument);
  // Windows reaching outside the volume count by their part inside it.
  SliceRing edges(10, 4);
  auto below = edges.Admit(-3, 1);
  ASSERT_TRUE(below.ok());
  EXPECT_TRUE(below->empty());
  auto above = edges.Admit(8, 12);
  ASSERT_TRUE(above.ok());
  EXPECT_TRUE(SameRuns(*above, {{0, 0, 4}, {4, 0, 4}}));  // a jump past the ring: each slot twice, in order
  auto outside = edges.Admit(12, 16);
  ASSERT_TRUE(outside.ok());
  EXPECT_TRUE(outside->empty());
}

// The labels-only accumulation done as blend.cu does it (slot = z % depth, each run
// argmaxed then zeroed before the next window is added), on the host, against the
// argmax of whole-volume double sums: windows on a grid in z order, batches spanning
// two z rows, windows sticking out of the volume, a ring as deep as the patch.
TEST(CudaSliceRing, RingAccumulationGivesTheWholeVolumeLabels) {
  const int64_t D = 23, H = 9, W = 7, C = 3, pz = 6, py = 5, px = 4;
  std::vector<std::array<int64_t, 3>> origins;
  for (int64_t z : {-1, 3, 7, 11, 15, 19})
    for (int64_t y : {0, 4})
      for (int64_t x : {0, 3}) origins.push_back({z, y, x});
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<double> whole(static_cast<size_t>(C * D * H * W), 0.0);
  SliceRing ring(D, std::min(pz, D));
  std::vector<float> slots(static_cast<size_t>(ring.depth() * C * H * W), 0.0f);
  std::vector<int> labels(static_cast<size_t>(D * H * W), -1);
  auto finalise = [&](const std::vector<SliceRun>& runs) {
    for (const SliceRun& r : runs)
      for (int64_t k = 0; k < r.count; ++k)
        for (int64_t i = 0; i < H * W; ++i) {
          float* s = slots.data() + ((r.slot + k) * C) * H * W + i;
          int best = 0;
          for (int c = 1; c < C; ++c)
            if (s[c * H * W] > s[best * H * W]) best = c;
          labels[static_cast<size_t>((r.z + k) * H * W + i)] = best;
          for (int c = 0; c < C; ++c) s[c * H * W] = 0.0f;
        }
  };
  for (const auto& o : origins) {
    auto runs = ring.Admit(o[0], o[0] + pz);
    ASSERT_TRUE(runs.ok()) << runs.status().ToString();
    finalise(*runs);
    for (int64_t z = 0; z < pz; ++z)
      for (int64_t y = 0; y < py; ++y)
        for (int64_t x = 0; x < px; ++x) {
          const int64_t vz = o[0] + z, vy = o[1] + y, vx = o[2] + x;
          for (int64_t c = 0; c < C; ++c) {
            const float v = normal(rng);
            if (vz < 0 || vz >= D || vy >= H || vx >= W) continue;
            slots[static_cast<size_t>(((vz % ring.depth()) * C + c) * H * W + vy * W + vx)] += v;
            whole[static_cast<size_t>((c * D + vz) * H * W + vy * W + vx)] += v;
          }
        }
  }
  finalise(ring.Finish());
  for (int64_t v = 0; v < D * H * W; ++v) {
    int best = 0;
    for (int c = 1; c < C; ++c)
      if (whole[static_cast<size_t>(c * D * H * W + v)] > whole[static_cast<size_t>(best * D * H * W + v)]) best = c;
    ASSERT_EQ(labels[static_cast<size_t>(v)], best) << "voxel " << v;
  }
}

// ---- the algorithm cache file --------------------------------------------------------------

TEST(CudaTuningCache, FileRoundTripAndBadLines) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("itkit_cache_test_" + std::to_string(std::random_device{}())))
                              .string();
  {
    TuningCache cache(dir);
    ASSERT_TRUE(cache.Load().ok());
    EXPECT_EQ(cache.size(), 0u);
    ASSERT_TRUE(cache.Insert("NVIDIA H100|sm90|fwd|n1", TunedAlgo{1, 3, 4096}).ok());
    ASSERT_TRUE(cache.Insert("NVIDIA H100|sm90|dgrad|n1", TunedAlgo{5, 1, 0}).ok());
    ASSERT_TRUE(cache.Insert("NVIDIA H100|sm90|fwd|n1", TunedAlgo{2, 1, 8192}).ok());  // re-tuned: last wins
    EXPECT_FALSE(cache.Insert("bad\tkey", TunedAlgo{}).ok());
  }
  {
    std::ofstream garbage(dir + "/" + TuningCache::kFileName, std::ios::app);
    garbage << "truncated line without tabs\n" << "k\tx\t1\t2\n" << "# comment\n" << "k2\t1\t2\n";
  }
  TuningCache reloaded(dir);
  auto n = reloaded.Load();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(reloaded.size(), 2u);
  auto fwd = reloaded.Find("NVIDIA H100|sm90|fwd|n1");
  ASSERT_TRUE(fwd.has_value());
  EXPECT_EQ(fwd->algo, 2);
  EXPECT_EQ(fwd->math_type, 1);
  EXPECT_EQ(fwd->workspace_bytes, 8192u);
  EXPECT_FALSE(reloaded.Find("k").has_value());
  auto parsed = TuningCache::ParseLine(TuningCache::FormatLine("key", TunedAlgo{7, 2, 123}));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first, "key");
  EXPECT_EQ(parsed->second.algo, 7);
  TuningCache memory_only("");
  EXPECT_TRUE(memory_only.Insert("k", TunedAlgo{}).ok());
  EXPECT_TRUE(memory_only.path().empty());
  std::filesystem::remove_all(dir);
}

// Hand-derived choices: time first, memory within 3 % of the fastest.
TEST(CudaAlgorithmChoice, SmallestWorkspaceWithinTimingNoise) {
  constexpr size_t MiB = size_t{1} << 20;
  EXPECT_EQ(PickAlgorithm({}), -1);
  // 1.02 ms is within 3 % of 1.00: its 10 MiB beat 900 MiB. 1.04 ms is not, despite 0 MiB.
  EXPECT_EQ(PickAlgorithm({{1.00, 900 * MiB}, {1.02, 10 * MiB}, {1.04, 0}}), 1);
  // Found out of order (the graph race times in heuristic order): the fastest is the third.
  EXPECT_EQ(PickAlgorithm({{2.0, 0}, {1.5, 64 * MiB}, {1.0, 512 * MiB}}), 2);
  // Exactly at the noise bound still counts; equal workspaces keep the earlier.
  EXPECT_EQ(PickAlgorithm({{1.0, 8 * MiB}, {1.03, 4 * MiB}}), 1);
  EXPECT_EQ(PickAlgorithm({{1.0, 8 * MiB}, {1.01, 8 * MiB}}), 0);
  // Untimed (cuDNN's heuristic order): its first, whatever the workspaces.
  EXPECT_EQ(PickAlgorithm({{-1.0, 900 * MiB}, {-1.0, 0}}), 0);
}

#if ITKIT_HAVE_CUDA
TEST(CudaAccumulatorWeights, GaussianIsSeparableSymmetricAndPositive) {
  const std::array<int64_t, 3> patch = {8, 12, 16};
  const std::vector<float> g = DefaultWindowWeights(patch, "gaussian", 0.125);
  ASSERT_EQ(g.size(), 8u * 12u * 16u);
  float peak = 0;
  for (float v : g) {
    EXPECT_GT(v, 0.0f);
    peak = std::max(peak, v);
  }
  EXPECT_NEAR(peak, 1.0f, 1e-6f);
  auto at = [&](int64_t z, int64_t y, int64_t x) { return g[static_cast<size_t>((z * 12 + y) * 16 + x)]; };
  EXPECT_FLOAT_EQ(at(0, 0, 0), at(7, 11, 15));  // symmetric
  EXPECT_NEAR(at(2, 3, 4) * at(3, 5, 7), at(2, 5, 4) * at(3, 3, 7), 1e-6f);  // separable
  EXPECT_LT(at(0, 0, 0), at(4, 6, 8));
  for (float v : DefaultWindowWeights(patch, "constant", 0.125)) EXPECT_EQ(v, 1.0f);
}

TEST(CudaAccumulatorWeights, CreateRejectsBadOptions) {
  AccumulatorOptions o;
  o.num_classes = 3;
  o.volume = {10, 10, 10};
  o.patch = {4, 4, 4};
  o.weights = std::vector<float>(64, 1.0f);
  o.weights[5] = 0.0f;
  auto acc = SlidingWindowAccumulator::Create(o);
  ASSERT_FALSE(acc.ok());
  EXPECT_EQ(acc.status().code(), StatusCode::kInvalidArgument);
  o.weights.clear();
  auto maybe = SlidingWindowAccumulator::Create(o);  // valid: created, or Unavailable without a GPU
  if (!maybe.ok()) {
    EXPECT_EQ(maybe.status().code(), StatusCode::kUnavailable) << maybe.status().ToString();
  }
}
#endif

}  // namespace
}  // namespace itkit::cuda
