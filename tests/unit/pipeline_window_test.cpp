// Sliding-window geometry and host accumulation, checked against hand-derived cases.
#include <gtest/gtest.h>

#include <cmath>

#include "accumulator.h"
#include "sliding_window.h"

namespace itkit::pipeline {
namespace {

using V = std::vector<int64_t>;

TEST(PipelineWindows, StartsFollowItkit) {
  // n = max(size - patch + stride - 1, 0) // stride + 1; last start moved back flush.
  EXPECT_EQ(WindowStarts(100, 32, 16), (V{0, 16, 32, 48, 64, 68}));
  EXPECT_EQ(WindowStarts(32, 32, 16), (V{0}));
  EXPECT_EQ(WindowStarts(33, 32, 16), (V{0, 1}));
  EXPECT_EQ(WindowStarts(64, 32, 32), (V{0, 32}));
  EXPECT_EQ(WindowStarts(65, 32, 32), (V{0, 32, 33}));
  EXPECT_EQ(WindowStarts(10, 4, 3), (V{0, 3, 6}));
  EXPECT_EQ(WindowStarts(11, 4, 3), (V{0, 3, 6, 7}));
  EXPECT_EQ(WindowStarts(5, 3, 1), (V{0, 1, 2}));
  EXPECT_EQ(WindowStarts(96, 96, 48), (V{0}));
}

TEST(PipelineWindows, PadsSmallAxesSymmetrically) {
  auto plan = PlanWindows({20, 70, 15}, {32, 32, 32}, {16, 16, 16});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->pad_before, (Zyx{6, 0, 8}));  // pad // 2 before
  EXPECT_EQ(plan->pad_after, (Zyx{6, 0, 9}));   // the rest after
  EXPECT_EQ(plan->padded, (Zyx{32, 70, 32}));
  EXPECT_EQ(plan->starts[1], (V{0, 16, 32, 38}));
  EXPECT_EQ(plan->count(), 4);
  EXPECT_TRUE(plan->padding());
}

TEST(PipelineWindows, OrderIsZMajor) {
  auto plan = PlanWindows({64, 64, 96}, {32, 32, 32}, {32, 32, 32});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->count(), 2 * 2 * 3);
  EXPECT_EQ(plan->Start(0), (Zyx{0, 0, 0}));
  EXPECT_EQ(plan->Start(1), (Zyx{0, 0, 32}));
  EXPECT_EQ(plan->Start(3), (Zyx{0, 32, 0}));
  EXPECT_EQ(plan->Start(6), (Zyx{32, 0, 0}));
  EXPECT_EQ(plan->Start(11), (Zyx{32, 32, 64}));
}

TEST(PipelineWindows, RejectsBadPatchAndStride) {
  EXPECT_FALSE(PlanWindows({10, 10, 10}, {4, 4, 4}, {5, 4, 4}).ok());  // gaps
  EXPECT_FALSE(PlanWindows({10, 10, 10}, {0, 4, 4}, {1, 1, 1}).ok());
  EXPECT_FALSE(PlanWindows({10, 10, 10}, {4, 4, 4}, {0, 4, 4}).ok());
  EXPECT_FALSE(PlanWindows({0, 10, 10}, {4, 4, 4}, {2, 2, 2}).ok());
}

TEST(PipelineWindows, CoverageCountsWindows) {
  auto c = AxisCoverage(WindowStarts(100, 32, 16), 100, 32, {});
  // windows 0,16,32,48,64,68 (each 32 long)
  EXPECT_EQ(c[0], 1);
  EXPECT_EQ(c[15], 1);
  EXPECT_EQ(c[16], 2);
  EXPECT_EQ(c[63], 2);
  EXPECT_EQ(c[64], 2);   // 48, 64
  EXPECT_EQ(c[68], 3);   // 48, 64, 68
  EXPECT_EQ(c[79], 3);
  EXPECT_EQ(c[80], 2);   // 64, 68
  EXPECT_EQ(c[96], 1);   // 68
  EXPECT_EQ(c[99], 1);
}

TEST(PipelineWindows, GaussianIsSigmaPatchOverEight) {
  auto w = GaussianWeights(8);  // sigma 1, centre 4
  ASSERT_EQ(w.size(), 8u);
  EXPECT_FLOAT_EQ(w[4], 1.0f);
  EXPECT_FLOAT_EQ(w[3], std::exp(-0.5f));
  EXPECT_FLOAT_EQ(w[5], std::exp(-0.5f));
  EXPECT_FLOAT_EQ(w[0], std::exp(-8.0f));
  auto c = AxisCoverage({0, 2}, 6, 4, GaussianWeights(4));  // sigma .5, centre 2
  const float g1 = std::exp(-2.0f), g2 = std::exp(-8.0f);
  EXPECT_FLOAT_EQ(c[0], g2);
  EXPECT_FLOAT_EQ(c[2], 1.0f + g2);
  EXPECT_FLOAT_EQ(c[3], g1 + g1);
  EXPECT_FLOAT_EQ(c[5], g1);
}

TEST(PipelineWindows, PadReplicateCopiesEdges) {
  auto plan = PlanWindows({1, 1, 2}, {1, 1, 5}, {1, 1, 1});
  ASSERT_TRUE(plan.ok());
  const float src[2] = {3, 7};
  float dst[5] = {};
  PadReplicate(src, 1, *plan, dst, nullptr);  // pad 3: 1 before, 2 after
  EXPECT_EQ(std::vector<float>(dst, dst + 5), (std::vector<float>{3, 3, 7, 7, 7}));
}

AccumulatorSpec LineSpec(bool keep_averages, void* labels, bool wide) {
  // 2 classes on a 1x1x6 grid, windows of 4 at x = 0 and 2.
  AccumulatorSpec spec;
  spec.classes = 2;
  spec.grid = {1, 1, 6};
  spec.patch = {1, 1, 4};
  spec.starts = {std::vector<int64_t>{0}, std::vector<int64_t>{0}, std::vector<int64_t>{0, 2}};
  spec.crop_begin = {0, 0, 0};
  spec.crop_size = {1, 1, 6};
  spec.coverage = {std::vector<float>{1}, std::vector<float>{1}, AxisCoverage({0, 2}, 6, 4, {})};
  spec.keep_averages = keep_averages;
  spec.target.data = labels;
  spec.target.wide = wide;
  spec.target.strides = {1, 6, 6};
  return spec;
}

TEST(PipelineAccumulator, AveragesOverlapsAndBreaksTiesLow) {
  uint8_t labels[6] = {9, 9, 9, 9, 9, 9};
  auto acc = CreateHostAccumulator(LineSpec(true, labels, false), nullptr);
  ASSERT_TRUE(acc.ok());
  // window 0: class0 = 1, class1 = 0 ; window 1: class0 = 0, class1 = 3
  auto w0 = Tensor::FromVector<float>({1, 1, 1, 1, 0, 0, 0, 0}, {1, 2, 1, 1, 4});
  auto w1 = Tensor::FromVector<float>({0, 0, 0, 0, 3, 3, 3, 3}, {1, 2, 1, 1, 4});
  ASSERT_TRUE((*acc)->Add(*w0, {{0, 0, 0}}).ok());
  ASSERT_TRUE((*acc)->Add(*w1, {{0, 0, 2}}).ok());
  ASSERT_TRUE((*acc)->Finish().ok());
  EXPECT_EQ(std::vector<int>(labels, labels + 6), (std::vector<int>{0, 0, 1, 1, 1, 1}));
  float avg[12];
  ASSERT_TRUE((*acc)->Averaged(avg).ok());
  const std::vector<float> expect{1, 1, 0.5f, 0.5f, 0, 0, 0, 0, 1.5f, 1.5f, 3, 3};
  EXPECT_EQ(std::vector<float>(avg, avg + 12), expect);

  uint16_t l16[6];
  auto tie = CreateHostAccumulator(LineSpec(false, l16, true), nullptr);
  auto same = Tensor::FromVector<float>({2, 2, 2, 2, 2, 2, 2, 2}, {1, 2, 1, 1, 4});
  ASSERT_TRUE((*tie)->Add(*same, {{0, 0, 0}}).ok());
  ASSERT_TRUE((*tie)->Add(*same, {{0, 0, 2}}).ok());
  ASSERT_TRUE((*tie)->Finish().ok());
  EXPECT_EQ(l16[0], 0);  // torch.argmax: first maximum
  EXPECT_FALSE((*tie)->Averaged(nullptr).ok());  // not kept
}

TEST(PipelineAccumulator, StreamsSlicesIntoAReorientedTarget) {
  // 3 classes, grid 5x1x2 (z,y,x), windows of depth 2 at z = 0,1,2,3 (stride 1):
  // a 2-deep ring. Labels go out reversed along z (target stride -2).
  AccumulatorSpec spec;
  spec.classes = 3;
  spec.grid = {5, 1, 2};
  spec.patch = {2, 1, 2};
  spec.starts = {std::vector<int64_t>{0, 1, 2, 3}, std::vector<int64_t>{0}, std::vector<int64_t>{0}};
  spec.crop_size = {5, 1, 2};
  spec.coverage = {AxisCoverage({0, 1, 2, 3}, 5, 2, {}), std::vector<float>{1}, std::vector<float>{1, 1}};
  uint8_t labels[10];
  spec.target.data = labels;
  spec.target.offset = 8;
  spec.target.strides = {1, 2, -2};
  auto acc = CreateHostAccumulator(spec, nullptr);
  ASSERT_TRUE(acc.ok());
  for (int64_t z = 0; z < 4; ++z) {
    // window z votes for class (z % 3) everywhere
    std::vector<float> v(3 * 2 * 2, 0.0f);
    for (int i = 0; i < 4; ++i) v[static_cast<size_t>((z % 3) * 4 + i)] = 1.0f + static_cast<float>(z);
    auto t = Tensor::FromVector<float>(v, {1, 3, 2, 1, 2});
    ASSERT_TRUE((*acc)->Add(*t, {{z, 0, 0}}).ok());
  }
  ASSERT_TRUE((*acc)->Finish().ok());
  // slice 0: window 0 only → class 0; slice 1: w0 (1 for c0) + w1 (2 for c1) → 1;
  // slice 2: w1 (2, c1) + w2 (3, c2) → 2; slice 3: w2 (3, c2) + w3 (4, c0) → 0; slice 4: w3 → 0.
  const std::vector<int> by_z{0, 1, 2, 0, 0};
  for (int z = 0; z < 5; ++z)
    for (int x = 0; x < 2; ++x) EXPECT_EQ(labels[8 - 2 * z + x], by_z[static_cast<size_t>(z)]) << z << "," << x;
}

}  // namespace
}  // namespace itkit::pipeline

// The window loop's fallbacks, with a stand-in network.
#include "window_runner.h"

namespace itkit::pipeline {
namespace {

// Two classes; runs out of memory on more than one window per forward.
class SmallMemoryNetwork final : public Network {
 public:
  std::string device() const override { return "cpu"; }
  Result<Tensor> Forward(const Tensor& in) override {
    ++calls;
    if (in.dim(0) > 1) return OutOfMemory("pretend GPU out of memory");
    Shape s = in.shape();
    s[1] = 2;
    auto out = Tensor::Allocate(DType::kF32, s);
    if (!out.ok()) return out.status();
    const int64_t n = in.dim(2) * in.dim(3) * in.dim(4);
    for (int64_t i = 0; i < n; ++i) out->data<float>()[n + i] = in.data<float>()[i] - 0.5f;  // class 1 if x > .5
    return out;
  }
  int calls = 0;
};

TEST(PipelineWindowRunner, ShrinksTheBatchOnOutOfMemoryAndFallsBackToHost) {
  std::vector<float> volume(6 * 6 * 6);
  for (size_t i = 0; i < volume.size(); ++i) volume[i] = (i % 6) < 3 ? 0.0f : 1.0f;  // x < 3: 0
  std::vector<uint8_t> labels(volume.size(), 7);
  WindowRunSpec spec;
  spec.input = volume.data();
  spec.size = {6, 6, 6};
  spec.patch = {4, 4, 4};
  spec.stride = {2, 2, 2};
  spec.batch = 4;
  spec.accumulate_device = "cuda";
  spec.label_voxels = static_cast<int64_t>(labels.size());
  spec.label_strides = {1, 6, 36};
  SmallMemoryNetwork net;
  ThreadPool pool(2);
  auto r = RunWindows(net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->windows, 8);
  EXPECT_EQ(r->batch, 1);
  ASSERT_GE(r->notes.size(), 3u);  // batch 4 → 2 → 1, CUDA accumulation unavailable
  EXPECT_NE(r->notes[0].find("out of memory"), std::string::npos);
  EXPECT_EQ(r->accumulator->device(), "cpu");
  for (size_t i = 0; i < volume.size(); ++i) ASSERT_EQ(r->labels8.data()[i], (i % 6) < 3 ? 0 : 1) << i;
}

TEST(PipelineWindowRunner, RefusesPatchesBeyondTheVoxelLimit) {
  std::vector<float> volume(8);
  WindowRunSpec spec;
  spec.input = volume.data();
  spec.size = {2, 2, 2};
  spec.patch = {1000, 1000, 1000};  // would pad a 2x2x2 volume to 10^9 voxels
  spec.stride = {500, 500, 500};
  spec.max_voxels = 1 << 20;
  SmallMemoryNetwork net;
  auto r = RunWindows(net, spec, nullptr, nullptr, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(net.calls, 0);
}

}  // namespace
}  // namespace itkit::pipeline
