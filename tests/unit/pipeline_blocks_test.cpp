// The block layout of the window grid: its cuts, the reorientation that writes it,
// and the window loop reading it (same labels as from the z, y, x layout).
#include <gtest/gtest.h>

#include <numeric>

#include "block_grid.h"
#include "orientation.h"
#include "window_runner.h"

namespace itkit::pipeline {
namespace {

using V = std::vector<int64_t>;

TEST(PipelineBlocks, CutsAtEveryWindowStartAndEnd) {
  // 512 wide, patch 96, stride 48: starts 0..384 and 416 (flush), ends 96..480, 512.
  auto plan = PlanWindows({320, 512, 512}, {96, 96, 96}, {48, 48, 48});
  ASSERT_TRUE(plan.ok());
  const BlockGrid g(plan->starts, plan->patch, plan->padded, 96);
  ASSERT_EQ(g.blocks(1), 12u);
  V bounds;
  for (size_t xs = 0; xs < g.blocks(1); ++xs) bounds.push_back(g.x0(xs));
  EXPECT_EQ(bounds, (V{0, 48, 96, 144, 192, 240, 288, 336, 384, 416, 432, 480}));
  EXPECT_EQ(g.volume(), 96 * 512 * 512);
  // Every window covers whole blocks, and exactly its span.
  for (int64_t s : plan->starts[2]) {
    const auto [a, b] = g.Range(1, s, s + 96);
    EXPECT_EQ(g.x0(a), s);
    EXPECT_EQ(g.x0(b - 1) + g.width(b - 1), s + 96);
  }
  // Blocks are stored one after another, z slices inside.
  EXPECT_EQ(g.offset(0, 1), 96 * 48 * 48);
  EXPECT_EQ(g.offset(1, 0), 96 * 48 * 512);
}

// A 2x(5x7x9) volume: value = index. `order` permutes, negative flips (as
// Reorientation does), so both the row and the tiled paths of the block writer run.
void CheckGather(const std::array<int64_t, 3>& strides, int64_t offset) {
  const std::array<int64_t, 3> size{9, 7, 5};  // x, y, z of the output
  std::vector<float> src(9 * 7 * 5);
  std::iota(src.begin(), src.end(), 0.0f);
  std::vector<float> plain(src.size()), blocked(src.size());
  ThreadPool pool(2);
  auto f = [](float v) { return v * 2; };
  StridedGather(src.data(), offset, strides, plain.data(), size, &pool, f);
  auto plan = PlanWindows({5, 7, 9}, {2, 3, 4}, {1, 2, 3});
  ASSERT_TRUE(plan.ok());
  const BlockGrid g(plan->starts, plan->patch, plan->padded, 5);
  StridedGatherBlocks(src.data(), offset, strides, blocked.data(), g, 5, &pool, f);
  for (size_t ys = 0; ys < g.blocks(0); ++ys)
    for (size_t xs = 0; xs < g.blocks(1); ++xs)
      for (int64_t z = 0; z < 5; ++z)
        for (int64_t y = 0; y < g.height(ys); ++y)
          for (int64_t x = 0; x < g.width(xs); ++x)
            ASSERT_EQ(blocked[static_cast<size_t>(g.offset(ys, xs) + (z * g.height(ys) + y) * g.width(xs) + x)],
                      plain[static_cast<size_t>((z * 7 + g.y0(ys) + y) * 9 + g.x0(xs) + x)])
                << ys << " " << xs << " " << z << " " << y << " " << x;
}

TEST(PipelineBlocks, GatherMatchesThePlainLayout) {
  CheckGather({1, 9, 63}, 0);                      // as stored
  CheckGather({-1, -9, -63}, 8 + 6 * 9 + 4 * 63);  // all axes flipped
  CheckGather({7, 1, 63}, 0);  // x and y swapped (a 7x9x5 source): the tiled path
}

TEST(PipelineBlocks, WindowLoopReadsBlocksLikeRows) {
  const Zyx size{11, 17, 23};
  std::vector<float> plain(11 * 17 * 23);
  for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<float>((i * 37) % 101) / 100.0f;
  WindowRunSpec spec;
  spec.size = size;
  spec.patch = {6, 8, 10};
  spec.stride = {3, 5, 4};
  spec.batch = 3;
  spec.label_voxels = static_cast<int64_t>(plain.size());
  spec.label_strides = {1, 23, 23 * 17};
  auto blocks = InputBlocks(size, spec.patch, spec.stride);
  ASSERT_TRUE(blocks.has_value());
  std::vector<float> blocked(plain.size());
  StridedGatherBlocks(plain.data(), 0, {1, 23, 23 * 17}, blocked.data(), *blocks, 11, nullptr,
                      [](float v) { return v; });
  auto net = CreateSyntheticNetwork(4);
  ThreadPool pool(2);
  spec.input = plain.data();
  auto a = RunWindows(*net, spec, &pool, nullptr, nullptr);
  spec.input = blocked.data();
  spec.input_blocked = true;
  auto b = RunWindows(*net, spec, &pool, nullptr, nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(std::vector<uint8_t>(a->labels8.data(), a->labels8.data() + plain.size()),
            std::vector<uint8_t>(b->labels8.data(), b->labels8.data() + plain.size()));
  // A volume smaller than the patch is padded: no block layout for it.
  EXPECT_FALSE(InputBlocks({4, 17, 23}, spec.patch, spec.stride).has_value());
}

}  // namespace
}  // namespace itkit::pipeline
