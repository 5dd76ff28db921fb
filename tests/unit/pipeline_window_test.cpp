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

TEST(PipelineAccumulator, AveragesOverlapsAndBreaksTiesLow) {
  // 2 classes on a 1x1x6 grid, windows of 4 at x = 0 and 2.
  AccumulatorSpec spec;
  spec.classes = 2;
  spec.grid = {1, 1, 6};
  spec.patch = {1, 1, 4};
  spec.crop_begin = {0, 0, 0};
  spec.crop_size = {1, 1, 6};
  spec.coverage = {std::vector<float>{1}, std::vector<float>{1}, AxisCoverage({0, 2}, 6, 4, {})};
  auto acc = CreateHostAccumulator(spec, nullptr);
  ASSERT_TRUE(acc.ok());
  // window 0: class0 = 1, class1 = 0 ; window 1: class0 = 0, class1 = 3
  auto w0 = Tensor::FromVector<float>({1, 1, 1, 1, 0, 0, 0, 0}, {1, 2, 1, 1, 4});
  auto w1 = Tensor::FromVector<float>({0, 0, 0, 0, 3, 3, 3, 3}, {1, 2, 1, 1, 4});
  ASSERT_TRUE((*acc)->Add(*w0, {{0, 0, 0}}).ok());
  ASSERT_TRUE((*acc)->Add(*w1, {{0, 0, 2}}).ok());
  float avg[12];
  ASSERT_TRUE((*acc)->Averaged(avg).ok());
  const std::vector<float> expect{1, 1, 0.5f, 0.5f, 0, 0, 0, 0, 1.5f, 1.5f, 3, 3};
  EXPECT_EQ(std::vector<float>(avg, avg + 12), expect);
  uint8_t labels[6];
  ASSERT_TRUE((*acc)->Argmax(labels).ok());
  EXPECT_EQ(std::vector<int>(labels, labels + 6), (std::vector<int>{0, 0, 1, 1, 1, 1}));

  auto tie = CreateHostAccumulator(spec, nullptr);
  auto same = Tensor::FromVector<float>({2, 2, 2, 2, 2, 2, 2, 2}, {1, 2, 1, 1, 4});
  ASSERT_TRUE((*tie)->Add(*same, {{0, 0, 0}}).ok());
  uint16_t l16[6];
  ASSERT_TRUE((*tie)->Argmax(l16).ok());
  EXPECT_EQ(l16[0], 0);  // torch.argmax: first maximum
}

}  // namespace
}  // namespace itkit::pipeline
