#include <gtest/gtest.h>

#include "itkit/channels_last.h"
#include "itkit/dtype.h"
#include "itkit/graph.h"
#include "itkit/tensor.h"
#include "itkit/thread_pool.h"

namespace itkit {
namespace {

TEST(Half, KnownBitPatterns) {
  // Values from the IEEE 754 binary16 tables.
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);        // rounds to +Inf
  EXPECT_EQ(FloatToHalf(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(0.333251953125f), 0x3555);
  EXPECT_FLOAT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_FLOAT_EQ(HalfToFloat(0x0001), 5.960464477539063e-08f);
  EXPECT_FLOAT_EQ(HalfToFloat(0xfbff), -65504.0f);
}

TEST(Tensor, RejectsOverflowingAndHugeShapes) {
  EXPECT_FALSE(CheckedElementCount({int64_t{1} << 40, int64_t{1} << 40}).ok());
  EXPECT_FALSE(CheckedElementCount({2, -1}).ok());
  EXPECT_FALSE(CheckedElementCount(Shape(9, 1)).ok());
  // Empty, but the other dims overflow: strides would overflow (found by the fuzzer).
  EXPECT_FALSE(CheckedElementCount({3, 0, int64_t{1} << 40, int64_t{1} << 40}).ok());
  EXPECT_EQ(*CheckedElementCount({3, 0, 5}), 0);
  auto huge = Tensor::Allocate(DType::kF32, {int64_t{1} << 20, int64_t{1} << 20});
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
}

// Strides of logical axes, derived by hand from the stored layouts.
TEST(Tensor, LogicalStridesOfRowMajorAndChannelsLastValues) {
  // [N, C, H, W] = [2, 3, 4, 5] stored row-major, and stored [2][4][5][3].
  EXPECT_EQ(LogicalStrides({2, 3, 4, 5}, false), (std::vector<int64_t>{60, 20, 5, 1}));
  EXPECT_EQ(LogicalStrides({2, 3, 4, 5}, true), (std::vector<int64_t>{60, 1, 15, 3}));
  // A filter [K, C, kd, kh, kw] = [8, 3, 2, 2, 2] in cuDNN's NDHWC layout [K][kd][kh][kw][C].
  EXPECT_EQ(LogicalStrides({8, 3, 2, 2, 2}, true), (std::vector<int64_t>{24, 1, 12, 6, 3}));
  // No channels-last form below rank 3: row-major.
  EXPECT_EQ(LogicalStrides({4, 5}, true), (std::vector<int64_t>{5, 1}));
}

TEST(Graph, DetectsCycleAndDanglingInput) {
  Graph g;
  g.inputs.push_back(ValueInfo{"x", DType::kF32, false, {}});
  Node a;
  a.name = "a"; a.op_type = "Relu"; a.inputs = {"y"}; a.outputs = {"z"};
  Node b;
  b.name = "b"; b.op_type = "Relu"; b.inputs = {"z"}; b.outputs = {"y"};
  g.nodes = {a, b};
  g.outputs.push_back(ValueInfo{"z", DType::kF32, false, {}});
  Status s = ValidateAndSortGraph(g);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cycle"), std::string::npos) << s.message();

  Graph h;
  Node c;
  c.name = "c"; c.op_type = "Relu"; c.inputs = {"missing"}; c.outputs = {"out"};
  h.nodes = {c};
  Status s2 = ValidateAndSortGraph(h);
  ASSERT_FALSE(s2.ok());
  EXPECT_NE(s2.message().find("missing"), std::string::npos);
}

TEST(Graph, SortsOutOfOrderNodes) {
  Graph g;
  g.inputs.push_back(ValueInfo{"x", DType::kF32, false, {}});
  Node second;
  second.name = "second"; second.op_type = "Relu"; second.inputs = {"t"}; second.outputs = {"y"};
  Node first;
  first.name = "first"; first.op_type = "Relu"; first.inputs = {"x"}; first.outputs = {"t"};
  g.nodes = {second, first};
  g.outputs.push_back(ValueInfo{"y", DType::kF32, false, {}});
  ASSERT_TRUE(ValidateAndSortGraph(g).ok());
  EXPECT_EQ(g.nodes[0].name, "first");
}

TEST(ThreadPool, CoversRangeExactlyOnce) {
  ThreadPool pool(4);
  std::vector<int> hits(10007, 0);
  pool.ParallelFor(static_cast<int64_t>(hits.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
}

}  // namespace
}  // namespace itkit
