// Intensity normalisation: ITKIT's window, CT normalisation, z-score.
#include <gtest/gtest.h>

#include <cmath>

#include "intensity.h"

namespace itkit::pipeline {
namespace {

TEST(PipelineIntensity, WindowClipsAndScales) {
  Normalization n;
  auto t = ResolveIntensity(n, 40.0, 400.0, nullptr);  // [-160, 240]
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_FLOAT_EQ((*t)(-1000), 0.0f);
  EXPECT_FLOAT_EQ((*t)(-160), 0.0f);
  EXPECT_FLOAT_EQ((*t)(40), 0.5f);
  EXPECT_FLOAT_EQ((*t)(240), 1.0f);
  EXPECT_FLOAT_EQ((*t)(3000), 1.0f);
  std::vector<float> v{-1000, 40, 140};
  ApplyIntensity(*t, v.data(), 3, nullptr);
  EXPECT_EQ(v, (std::vector<float>{0, 0.5f, 0.75f}));
}

TEST(PipelineIntensity, RequestWindowOverridesModel) {
  Normalization n;
  n.window_level = 0;
  n.window_width = 2;
  auto model = ResolveIntensity(n, std::nullopt, std::nullopt, nullptr);
  ASSERT_TRUE(model.ok());
  EXPECT_FLOAT_EQ((*model)(0.5), 0.75f);
  auto req = ResolveIntensity(n, 10.0, 20.0, nullptr);
  ASSERT_TRUE(req.ok());
  EXPECT_FLOAT_EQ((*req)(10), 0.5f);
  // WL = 0 is a valid level (ITKIT's truthiness test would drop it).
  auto zero = ResolveIntensity(Normalization{}, 0.0, 100.0, nullptr);
  ASSERT_TRUE(zero.ok());
  EXPECT_FLOAT_EQ((*zero)(0), 0.5f);
}

TEST(PipelineIntensity, MissingOrBadWindowIsAnError) {
  auto none = ResolveIntensity(Normalization{}, std::nullopt, std::nullopt, nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("window_level"), std::string::npos);
  EXPECT_FALSE(ResolveIntensity(Normalization{}, 40.0, 0.0, nullptr).ok());
  EXPECT_FALSE(ResolveIntensity(Normalization{}, 40.0, -5.0, nullptr).ok());
  EXPECT_FALSE(ResolveIntensity(Normalization{}, NAN, 100.0, nullptr).ok());
}

TEST(PipelineIntensity, CtNormalisation) {
  Normalization n;
  n.mode = "ct";
  n.clip_low = -100;
  n.clip_high = 200;
  n.mean = 50;
  n.std = 25;
  std::string note;
  auto t = ResolveIntensity(n, 40.0, 400.0, &note);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(note.empty());  // the request window does not apply to mode ct
  EXPECT_FLOAT_EQ((*t)(300), 6.0f);
  EXPECT_FLOAT_EQ((*t)(-500), -6.0f);
  EXPECT_FLOAT_EQ((*t)(75), 1.0f);
  n.std = 0;
  EXPECT_FALSE(ResolveIntensity(n, std::nullopt, std::nullopt, nullptr).ok());
}

TEST(PipelineIntensity, ZScoreUsesImageStatistics) {
  Normalization n;
  n.mode = "zscore";
  auto t = ResolveIntensity(n, std::nullopt, std::nullopt, nullptr);
  ASSERT_TRUE(t.ok());
  std::vector<float> v{1, 2, 3, 4};
  FitZScore(&*t, v.data(), 4, nullptr);
  ApplyIntensity(*t, v.data(), 4, nullptr);
  const float sd = std::sqrt(1.25f);
  EXPECT_FLOAT_EQ(v[0], -1.5f / sd);
  EXPECT_FLOAT_EQ(v[3], 1.5f / sd);
  std::vector<float> flat{5, 5, 5};
  auto f = ResolveIntensity(n, std::nullopt, std::nullopt, nullptr);
  FitZScore(&*f, flat.data(), 3, nullptr);
  ApplyIntensity(*f, flat.data(), 3, nullptr);
  EXPECT_FLOAT_EQ(flat[0], 0.0f);  // no division by zero
}

}  // namespace
}  // namespace itkit::pipeline
