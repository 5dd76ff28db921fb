// Orientation codes and reorientation, against values SimpleITK's DICOMOrient gives.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <numeric>

#include "orientation.h"

namespace itkit::pipeline {
namespace {

std::string Code(std::array<double, 9> d) {
  auto r = OrientationOf(d);
  return r.ok() ? *r : "error: " + r.status().message();
}

TEST(PipelineOrientation, CodesNameWhereAxesPoint) {
  EXPECT_EQ(Code({1, 0, 0, 0, 1, 0, 0, 0, 1}), "LPS");  // ITK identity
  EXPECT_EQ(Code({1, 0, 0, 0, 1, 0, 0, 0, -1}), "LPI");  // ITKIT's network orientation
  EXPECT_EQ(Code({-1, 0, 0, 0, -1, 0, 0, 0, 1}), "RAS");
  EXPECT_EQ(Code({0, 0, 1, 1, 0, 0, 0, 1, 0}), "PSL");  // SimpleITK: PSL
  EXPECT_EQ(Code({1, 0, 0, 0, 0, -1, 0, 1, 0}), "LSA");
  const double c = std::cos(0.5), s = std::sin(0.5);  // ~29 degrees about z
  EXPECT_EQ(Code({c, -s, 0, s, c, 0, 0, 0, 1}), "LPS");
  const double h = std::sqrt(0.5);  // exact 45-degree ties, as SimpleITK breaks them
  EXPECT_EQ(Code({h, -h, 0, h, h, 0, 0, 0, 1}), "LPS");
  EXPECT_EQ(Code({h, h, 0, -h, h, 0, 0, 0, 1}), "LPS");
  EXPECT_EQ(Code({h, 0, -h, 0, 1, 0, h, 0, h}), "LPS");
}

TEST(PipelineOrientation, RejectsSingularDirections) {
  EXPECT_FALSE(OrientationOf({1, 0, 0, 1, 0, 0, 0, 0, 1}).ok());
  EXPECT_FALSE(OrientationOf({0, 0, 0, 0, 0, 0, 0, 0, 0}).ok());
  EXPECT_FALSE(OrientationOf({NAN, 0, 0, 0, 1, 0, 0, 0, 1}).ok());
}

TEST(PipelineOrientation, NormalizesCodes) {
  EXPECT_EQ(*NormalizeOrientationCode("lpi"), "LPI");
  EXPECT_FALSE(NormalizeOrientationCode("LLP").ok());
  EXPECT_FALSE(NormalizeOrientationCode("LPX").ok());
  EXPECT_FALSE(NormalizeOrientationCode("LP").ok());
}

TEST(PipelineOrientation, LpsToLpiFlipsZOnly) {
  Geometry g;
  g.size = {3, 4, 5};
  g.spacing = {1, 2, 3};
  g.origin = {10, 20, 30};
  auto r = PlanReorientation(g, "LPI");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->map.order, (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(r->map.flip, (std::array<bool, 3>{false, false, true}));
  EXPECT_EQ(r->output.size, g.size);
  EXPECT_EQ(r->output.origin, (std::array<double, 3>{10, 20, 42}));  // last slice: 30 + 4 * 3
  EXPECT_EQ(r->output.direction, (std::array<double, 9>{1, 0, 0, 0, 1, 0, 0, 0, -1}));
}

TEST(PipelineOrientation, LsaToLpiPermutesAndFlips) {
  Geometry g;
  g.size = {2, 3, 4};
  g.spacing = {0.5, 1.5, 2.5};
  g.direction = {1, 0, 0, 0, 0, -1, 0, 1, 0};  // axis1 toward S, axis2 toward A
  auto r = PlanReorientation(g, "LPI");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->from, "LSA");
  // L = axis 0; P = axis 2 reversed (it points A); I = axis 1 reversed (it points S).
  EXPECT_EQ(r->map.order, (std::array<int, 3>{0, 2, 1}));
  EXPECT_EQ(r->map.flip, (std::array<bool, 3>{false, true, true}));
  EXPECT_EQ(r->output.size, (std::array<int64_t, 3>{2, 4, 3}));
  EXPECT_EQ(r->output.spacing, (std::array<double, 3>{0.5, 2.5, 1.5}));
  EXPECT_EQ(r->output.direction, (std::array<double, 9>{1, 0, 0, 0, 1, 0, 0, 0, -1}));
  // Output origin = input voxel (0, 2, 3): y = -(3 * 2.5) ... physical of index (0,2,3).
  EXPECT_DOUBLE_EQ(r->output.origin[1], -3 * 2.5);
  EXPECT_DOUBLE_EQ(r->output.origin[2], 2 * 1.5);

  std::vector<int> in(24), out(24), back(24);
  std::iota(in.begin(), in.end(), 0);
  auto id = [](int v) { return v; };
  ReorientForward(*r, in.data(), out.data(), nullptr, id);
  // output (x=1, y=0, z=0) = input (x=1, y=2, z=3) = 1 + 2*2 + 3*6
  EXPECT_EQ(out[1], 1 + 2 * 2 + 3 * 6);
  // output (x=0, y=1, z=2) = input (x=0, y=0, z=2)
  EXPECT_EQ(out[(2 * 4 + 1) * 2], 2 * 6);
  ReorientBackward(*r, out.data(), back.data(), nullptr, id);
  EXPECT_EQ(back, in);
}

TEST(PipelineOrientation, TiledPathMatchesRowPath) {
  // A permutation whose output rows run across input rows takes the tiled path.
  Geometry g;
  g.size = {37, 21, 19};
  g.direction = {0, 0, 1, 1, 0, 0, 0, 1, 0};  // PSL
  auto r = PlanReorientation(g, "LPI");
  ASSERT_TRUE(r.ok());
  std::vector<int> in(static_cast<size_t>(g.voxels())), out(in.size()), back(in.size());
  std::iota(in.begin(), in.end(), 0);
  ThreadPool pool(2);
  auto id = [](int v) { return v; };
  ReorientForward(*r, in.data(), out.data(), &pool, id);
  ReorientBackward(*r, out.data(), back.data(), &pool, id);
  EXPECT_EQ(back, in);
  std::vector<int> sorted = out;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, in);  // a permutation of the voxels
}

}  // namespace
}  // namespace itkit::pipeline
