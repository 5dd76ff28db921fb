// The run-length gzip coder for label maps, read back by the general inflater
// (libdeflate or zlib: an independent decoder).
#include <gtest/gtest.h>

#include <random>

#include "gzip_codec.h"
#include "rle_deflate.h"

namespace itkit::pipeline {
namespace {

std::vector<uint8_t> Inflate(const std::vector<uint8_t>& gz, size_t n) {
  std::vector<uint8_t> out(n + 16);
  auto got = GunzipInto(gz.data(), gz.size(), out.data(), out.size());
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  out.resize(got.ok() ? *got : 0);
  return out;
}

// Runs of every length that splits matches differently (1..3, around 258 and 2 x 258).
std::vector<uint8_t> Runs(size_t elem) {
  std::vector<uint8_t> v;
  const size_t lengths[] = {1, 2, 3, 4, 10, 255, 256, 257, 258, 259, 260, 261, 262, 515, 516, 517, 519, 5000, 1, 1};
  uint8_t label = 0;
  for (size_t len : lengths)
    for (int rep = 0; rep < 3; ++rep, label = static_cast<uint8_t>(label * 7 + 3))
      for (size_t i = 0; i < len; ++i)
        for (size_t b = 0; b < elem; ++b) v.push_back(static_cast<uint8_t>(label + 101 * b));
  return v;
}

TEST(PipelineRleDeflate, RoundTripsRunsOfEveryLength) {
  for (size_t elem : {1, 2}) {
    const std::vector<uint8_t> in = Runs(elem);
    auto gz = GzipRunLength(in.data(), in.size(), elem);
    ASSERT_TRUE(gz.ok());
    ASSERT_FALSE(gz->empty()) << elem;
    EXPECT_LT(gz->size(), in.size() / 20) << elem;
    EXPECT_EQ(Inflate(*gz, in.size()), in) << elem;
  }
}

TEST(PipelineRleDeflate, EdgeSizes) {
  for (size_t elem : {1, 2}) {
    for (size_t n : {0, 1, 2, 3, 7, 8, 9, 17}) {
      std::vector<uint8_t> in(n, 200);
      if (n > 4) in[4] = 9;
      auto gz = GzipRunLength(in.data(), n, elem);  // n odd with elem 2: a trailing byte
      ASSERT_TRUE(gz.ok());
      ASSERT_FALSE(gz->empty()) << elem << " " << n;
      EXPECT_EQ(Inflate(*gz, n), in) << elem << " " << n;
    }
  }
  EXPECT_FALSE(GzipRunLength(nullptr, 0, 3).ok());
}

TEST(PipelineRleDeflate, GivesUpOnNoiseAndMembersFallBack) {
  std::mt19937 rng(7);
  std::vector<uint8_t> noise(3 << 20);
  for (auto& b : noise) b = static_cast<uint8_t>(rng() % 3);
  auto gz = GzipRunLength(noise.data(), noise.size(), 1);
  ASSERT_TRUE(gz.ok());
  EXPECT_TRUE(gz->empty());
  // GzipMembers compresses such labels with the general coder instead.
  auto members = GzipMembers(noise.data(), noise.size(), 1, nullptr, 1);
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 1u);
  EXPECT_EQ(Inflate((*members)[0], noise.size()), noise);
}

}  // namespace
}  // namespace itkit::pipeline
