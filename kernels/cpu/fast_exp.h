// e^x for x <= 0 in plain arithmetic the compiler vectorises (std::exp is a libm call
// per element): softmax's exp(x - max) was a third of SwinUNETR's CPU time. Within 2
// ulp of e^x down to x = -87 (the smallest normal float's exponent); 0 below, where
// e^x < 1.7e-38 (std::exp would give a denormal); NaN stays NaN. Tested against
// std::exp over the whole range (tests/unit/ops_reduce_test.cpp).
//
// No branches or float compares: under GCC's default -ftrapping-math a float select
// turns into control flow the vectoriser refuses (kernels/CMakeLists.txt turns that
// off for the CPU kernels; integer masks over the bits vectorise either way).
#pragma once

#include <bit>
#include <cstdint>

namespace itkit::cpu {

inline float ExpOfNonPositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 split so n * kLn2Hi is exact
  constexpr float kLn2Lo = 1.428606765330187e-06f;
  constexpr float kRound = 12582912.0f;         // 1.5 * 2^23: adding it rounds to an integer
  constexpr uint32_t kLowest = std::bit_cast<uint32_t>(-87.0f);
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  // As unsigned, negative floats order by magnitude above every positive one.
  const uint32_t tiny = 0u - static_cast<uint32_t>(bits > kLowest);                   // x < -87, -inf
  const uint32_t nan = 0u - static_cast<uint32_t>((bits & 0x7fffffffu) > 0x7f800000u);  // either sign
  const float xc = std::bit_cast<float>((bits & ~tiny) | (kLowest & tiny));
  const float t = xc * kLog2e + kRound;
  const float n = t - kRound;                                      // round(x / ln 2), >= -126
  const int32_t e = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;                  // |r| <= ln 2 / 2
  // e^r by its Taylor series to r^6 (remainder < 1.3e-7 relative for |r| <= 0.347).
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float y = p * std::bit_cast<float>((e + 127) << 23);      // times 2^n
  return std::bit_cast<float>((std::bit_cast<uint32_t>(y) & ~tiny & ~nan) | (bits & nan));
}

}  // namespace itkit::cpu
