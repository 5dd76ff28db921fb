// Our own convolution kernels (kernels/cuda/conv3_c32.cu, conv3_stem.cu,
// conv_transpose_strided.cu) run whole on the emulator against the convolutions
// written out from their definitions (tests/ops/conv_reference.h). On a GPU they are
// only reached through the race against cuDNN, which the emulator has not; here each
// launcher is called directly, on shapes that cover its partial tiles, its ring of
// planes, its element-wise and vector paths, and grids smaller than the work.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "conv_reference.h"
#include "cuda/own_kernels.cuh"
#include "itkit/devices.h"

namespace itkit::test::ops {
namespace {

// f16 device copies of host floats (rounded), and back.
class HalfBuffer {
 public:
  explicit HalfBuffer(const std::vector<float>& values) : count_(values.size()) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<size_t>(count_, 1) * sizeof(__half)), cudaSuccess);
    std::vector<__half> h(count_);
    for (size_t i = 0; i < count_; ++i) h[i] = __float2half_rn(values[i]);
    EXPECT_EQ(cudaMemcpy(data_, h.data(), count_ * sizeof(__half), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~HalfBuffer() { cudaFree(data_); }
  HalfBuffer(const HalfBuffer&) = delete;
  HalfBuffer& operator=(const HalfBuffer&) = delete;
  __half* get() const { return data_; }
  std::vector<float> Read() const {
    std::vector<__half> h(count_);
    EXPECT_EQ(cudaMemcpy(h.data(), data_, count_ * sizeof(__half), cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<float> f(count_);
    for (size_t i = 0; i < count_; ++i) f[i] = __half2float(h[i]);
    return f;
  }

 private:
  size_t count_;
  __half* data_ = nullptr;
};

// Values as the kernels see them: rounded to f16.
std::vector<float> RandomHalfValues(size_t n, std::mt19937& rng, float scale) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = __half2float(__float2half_rn(scale * u(rng)));
  return v;
}

// Every output within f16 rounding of the reference (and finite: NaN fails).
void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 2e-3f * std::fabs(want[i]) + 2e-3f) && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " outputs differ; first at " << first
                     << ": got " << got[first] << ", want " << want[first];
}

std::shared_ptr<cuda::CudaContext> EmulatedContext() {
  auto backend = CreateCudaBackend(CudaBackendOptions{});
  EXPECT_TRUE(backend.ok()) << backend.status().message();
  // The backend owns the context; keep the backend alive with it.
  static std::vector<std::shared_ptr<Backend>> keep;
  keep.push_back(*backend);
  return cuda::ContextOf(**backend);
}

float LeakyRelu(float v, float alpha) { return v >= 0.0f ? v : alpha * v; }

TEST(CudaEmuKernels, Conv3C32MatchesTheDefinition) {
  auto ctx = EmulatedContext();
  ASSERT_TRUE(ctx);
  ASSERT_TRUE(cuda::PrepareConv3C32(*ctx).ok());
  std::mt19937 rng(11);
  constexpr int C = cuda::kConv3Channels;
  struct Case {
    cuda::Conv3Shape s;
    int num_sms;
    bool bias, z, z_is_y;
  };
  const Case cases[] = {
      {{1, 3, 10, 70}, 2, true, true, false},   // partial row and column tiles
      {{2, 5, 8, 64}, 8, true, true, true},     // exact tiles, depth chunks; Z written over by Y
      {{1, 2, 3, 5}, 1, false, false, false},   // smaller than a tile in every direction
      {{1, 9, 8, 64}, 1, true, false, false},   // one block through 9 planes: the ring wraps
  };
  for (const Case& c : cases) {
    const cuda::Conv3Shape& s = c.s;
    SCOPED_TRACE(::testing::Message() << s.n << "x" << s.d << "x" << s.h << "x" << s.w << " on " << c.num_sms
                                      << " SMs");
    ctx->num_sms = c.num_sms;  // the grid a GPU with that many SMs would get
    const size_t count = static_cast<size_t>(s.n * s.d * s.h * s.w * C);
    const std::vector<float> x = RandomHalfValues(count, rng, 1.0f), w = RandomHalfValues(C * C * 27, rng, 0.1f);
    const std::vector<float> b = c.bias ? RandomHalfValues(C, rng, 1.0f) : std::vector<float>();
    const std::vector<float> z = c.z ? RandomHalfValues(count, rng, 1.0f) : std::vector<float>();
    std::vector<float> want = Conv3x3x3ByDefinition({s.n, s.d, s.h, s.w}, C, C, x, w, b, z);
    for (float& v : want) v = LeakyRelu(v, 0.1f);
    HalfBuffer dx(x), dw(PackCoutTapCin(w, C, C)), db(b), dz(z.empty() ? std::vector<float>(count) : z),
        dy(std::vector<float>(count, NAN));
    __half* y = c.z_is_y ? dz.get() : dy.get();
    ASSERT_TRUE(cuda::LaunchConv3C32(*ctx, s, dx.get(), dw.get(), c.bias ? db.get() : nullptr,
                                     c.z ? dz.get() : nullptr, y, cuda::Act::kLeakyRelu, 0.1f)
                    .ok());
    ASSERT_EQ(cudaStreamSynchronize(ctx->stream), cudaSuccess);
    ExpectNear(c.z_is_y ? dz.Read() : dy.Read(), want, "conv3 32->32");
  }
  ctx->num_sms = 132;
}

template <int CIN, int COUT>
void CheckStem(cuda::CudaContext& ctx, const cuda::StemShape& s, bool bias, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << CIN << " -> " << COUT << ", " << s.n << "x" << s.d << "x" << s.h << "x" << s.w);
  const size_t voxels = static_cast<size_t>(s.n * s.d * s.h * s.w);
  const std::vector<float> x = RandomHalfValues(voxels * CIN, rng, 1.0f), w = RandomHalfValues(COUT * CIN * 27, rng, 0.3f);
  const std::vector<float> b = bias ? RandomHalfValues(COUT, rng, 1.0f) : std::vector<float>();
  std::vector<float> want = Conv3x3x3ByDefinition({s.n, s.d, s.h, s.w}, CIN, COUT, x, w, b);
  for (float& v : want) v = std::max(v, 0.0f);
  HalfBuffer dx(x), dw(PackCoutTapCin(w, COUT, CIN)), db(b), dy(std::vector<float>(voxels * COUT, NAN));
  ASSERT_TRUE(cuda::LaunchConv3Stem(ctx, s, dx.get(), dw.get(), bias ? db.get() : nullptr, dy.get(), cuda::Act::kRelu, 0.0f)
                  .ok());
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  ExpectNear(dy.Read(), want, "stem");
}

TEST(CudaEmuKernels, Conv3StemMatchesTheDefinition) {
  auto ctx = EmulatedContext();
  ASSERT_TRUE(ctx);
  std::mt19937 rng(21);
  // Odd widths (a last item of one voxel), a width of one, two samples, every input count.
  CheckStem<1, 32>(*ctx, {2, 3, 4, 7, 1, 32}, true, rng);
  CheckStem<1, 16>(*ctx, {1, 1, 3, 1, 1, 16}, false, rng);
  CheckStem<2, 32>(*ctx, {1, 2, 5, 6, 2, 32}, true, rng);
  CheckStem<3, 16>(*ctx, {1, 4, 2, 5, 3, 16}, true, rng);
  CheckStem<4, 32>(*ctx, {2, 2, 3, 3, 4, 32}, false, rng);
}

TEST(CudaEmuKernels, StridedTransposeMatchesTheDefinition) {
  auto ctx = EmulatedContext();
  ASSERT_TRUE(ctx);
  std::mt19937 rng(31);
  struct Case {
    int64_t n, cin, cout;
    int64_t in[3], k[3];
    int num_sms;
    bool bias;
  };
  const Case cases[] = {
      {2, 16, 8, {3, 5, 6}, {2, 2, 2}, 132, true},  // 16-byte loads, channel pairs
      {1, 32, 16, {4, 6, 7}, {2, 2, 2}, 1, true},   // more tiles than blocks: each block walks several
      {1, 5, 3, {2, 3, 4}, {1, 2, 2}, 4, false},    // element-wise loads, single-channel stores
      {1, 40, 24, {2, 2, 3}, {2, 2, 2}, 2, true},   // K over two steps, columns over three tiles
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.cin << " -> " << c.cout << ", in " << c.in[0] << "x" << c.in[1] << "x"
                                      << c.in[2] << ", k " << c.k[0] << c.k[1] << c.k[2]);
    ctx->num_sms = c.num_sms;
    const int64_t taps = c.k[0] * c.k[1] * c.k[2], voxels = c.n * c.in[0] * c.in[1] * c.in[2];
    const int cin = static_cast<int>(c.cin), cout = static_cast<int>(c.cout);
    const std::vector<float> x = RandomHalfValues(static_cast<size_t>(voxels * c.cin), rng, 1.0f);
    const std::vector<float> w = RandomHalfValues(static_cast<size_t>(c.cin * c.cout * taps), rng, 0.3f);
    const std::vector<float> b = c.bias ? RandomHalfValues(static_cast<size_t>(c.cout), rng, 1.0f) : std::vector<float>();
    const std::vector<float> want = StridedTransposeByDefinition(c.n, c.in, c.k, cin, cout, x, w, b);
    HalfBuffer dx(x), dw(PackCinTapCout(w, cin, cout, taps)), db(b), dy(std::vector<float>(want.size(), NAN));
    cuda::StridedTransposeShape s;
    s.n = c.n;
    s.cin = c.cin;
    s.cout = c.cout;
    for (int a = 0; a < 3; ++a) s.in[a] = c.in[a], s.k[a] = c.k[a];
    ASSERT_TRUE(cuda::LaunchStridedTranspose(*ctx, s, dx.get(), dw.get(), c.bias ? db.get() : nullptr, dy.get()).ok());
    ASSERT_EQ(cudaStreamSynchronize(ctx->stream), cudaSuccess);
    ExpectNear(dy.Read(), want, "strided ConvTranspose");
  }
  ctx->num_sms = 132;
}

// The race that decides, per shape, whether one of our kernels replaces cuDNN's
// (own_kernel_race.cu): outputs compared before anything is timed; a kernel that
// disagrees, or writes a NaN, never wins; a difference within the tolerance agrees.
TEST(CudaEmuKernels, RaceComparesOutputsBeforeTiming) {
  auto ctx = EmulatedContext();
  ASSERT_TRUE(ctx);
  constexpr int64_t n = 5000;
  __half *library = nullptr, *own = nullptr;
  ASSERT_EQ(cudaMalloc(&library, n * sizeof(__half)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&own, n * sizeof(__half)), cudaSuccess);
  auto fill = [&](__half* p, uint32_t seed) {
    return [&ctx, p, seed] { return cuda::FillPseudoRandom(*ctx, p, n, seed); };
  };
  // Writes own = the library's values with element 5 changed to `value_at_5` (raw f16).
  auto fill_then_set = [&](uint32_t seed, uint16_t value_at_5) {
    return [&ctx, own, seed, value_at_5]() -> Status {
      ITKIT_RETURN_IF_ERROR(cuda::FillPseudoRandom(*ctx, own, n, seed));
      return ctx->Upload(own + 5, &value_at_5, sizeof(value_at_5));
    };
  };
  auto same = cuda::RaceOwnKernel(*ctx, fill(library, 3), fill(own, 3), library, own, n, 1e-2, 2);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_TRUE(same->output.agree);
  EXPECT_EQ(same->output.max_abs_diff, 0.0);
  EXPECT_GT(same->output.max_abs_library, 0.9);  // values spread over [-1, 1)
  EXPECT_GE(same->library_ms, 0.0);
  EXPECT_GE(same->own_ms, 0.0);

  auto other = cuda::RaceOwnKernel(*ctx, fill(library, 3), fill(own, 4), library, own, n, 1e-2, 1);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->output.agree);
  EXPECT_FALSE(other->own_wins());

  __half_raw at5;
  ASSERT_EQ(cudaMemcpy(&at5, library + 5, sizeof(at5), cudaMemcpyDeviceToHost), cudaSuccess);
  auto nan = cuda::RaceOwnKernel(*ctx, fill(library, 3), fill_then_set(3, 0x7e00), library, own, n, 1e-2, 1);
  ASSERT_TRUE(nan.ok());
  EXPECT_FALSE(nan->output.agree);
  EXPECT_TRUE(std::isnan(nan->output.max_abs_diff));

  const auto one_step = static_cast<uint16_t>(at5.x + 1);  // one f16 step away: ~1e-3 of a value below 1
  auto close = cuda::RaceOwnKernel(*ctx, fill(library, 3), fill_then_set(3, one_step), library, own, n, 1e-2, 1);
  ASSERT_TRUE(close.ok());
  EXPECT_TRUE(close->output.agree);
  EXPECT_GT(close->output.max_abs_diff, 0.0);
  cudaFree(library);
  cudaFree(own);
}

}  // namespace
}  // namespace itkit::test::ops
