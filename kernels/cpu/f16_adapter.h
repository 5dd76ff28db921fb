// f16 for the CPU's float kernels: branch-free half <-> float conversions, and an
// adapter that runs an f32 kernel on f16 values (inputs converted to f32, outputs
// converted back). The CPU computes in f32 anyway; this keeps an f16 model running
// when a node falls back to the CPU, at the cost of f32 copies of its tensors.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/cpu_ops.h"

namespace itkit::cpu {

// IEEE binary16 <-> binary32 without branches, bit-identical to FloatToHalf /
// HalfToFloat in runtime/core/dtype.cpp (round to nearest even, NaN kept quiet;
// checked exhaustively by a unit test). Those branch on the value class and
// mispredict on real data; these are selects over values computed for every case,
// so a Cast of a whole volume vectorises.
inline uint16_t HalfFromFloatFast(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  // Normal half: rebias the exponent (127 -> 15) and round away the 13 low mantissa
  // bits to nearest even; a carry out of the mantissa correctly bumps the exponent.
  const uint32_t normal = (a - 0x38000000u + 0x0fffu + ((a >> 13) & 1u)) >> 13;
  // Subnormal half: 0.5f has an ulp of 2^-24, the half subnormal step, so the FPU's
  // own round-to-nearest-even of |f| + 0.5 leaves the half mantissa in the low bits.
  float absf;
  std::memcpy(&absf, &a, 4);
  const float shifted = absf + 0.5f;
  uint32_t sub;
  std::memcpy(&sub, &shifted, 4);
  sub -= 0x3f000000u;
  uint32_t h = a < 0x38800000u ? sub : normal;
  h = a >= 0x47800000u ? 0x7c00u : h;  // beyond the half range (and inf) -> inf
  h = a > 0x7f800000u ? 0x7e00u : h;   // NaN -> quiet NaN
  return static_cast<uint16_t>(sign | h);
}

inline float FloatFromHalfFast(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t a = bits & 0x7fffu;
  const uint32_t normal = (a << 13) + 0x38000000u;  // exponent 15 -> 127
  const uint32_t special = (a << 13) | 0x7f800000u;  // inf/NaN keep their payload
  const float subf = static_cast<float>(static_cast<int32_t>(a)) * 5.9604644775390625e-08f;  // a * 2^-24, exact
  uint32_t sub;
  std::memcpy(&sub, &subf, 4);
  uint32_t r = a < 0x0400u ? sub : normal;
  r = a >= 0x7c00u ? special : r;
  r |= sign;
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

class F16Adapter final : public OpKernel {
 public:
  F16Adapter(std::unique_ptr<OpKernel> inner, std::vector<bool> half_inputs, std::vector<bool> half_outputs)
      : inner_(std::move(inner)), half_inputs_(std::move(half_inputs)), half_outputs_(std::move(half_outputs)) {}

  size_t workspace_bytes() const override { return inner_->workspace_bytes(); }
  // Safe to forward: a converted input is read whole before any output is written.
  int in_place_input() const override { return inner_->in_place_input(); }

  Status Run(KernelContext& ctx) override {
    KernelContext c = ctx;
    std::vector<Tensor> in32(ctx.inputs.size()), out32(ctx.outputs.size());
    for (size_t i = 0; i < ctx.inputs.size(); ++i) {
      if (i >= half_inputs_.size() || !half_inputs_[i] || !ctx.inputs[i]) continue;
      ITKIT_ASSIGN_OR_RETURN(in32[i], Tensor::Allocate(DType::kF32, ctx.inputs[i]->shape()));
      const uint16_t* src = ctx.inputs[i]->data<uint16_t>();
      float* dst = in32[i].data<float>();
      ParallelFor(ctx.pool, in32[i].size(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) dst[j] = FloatFromHalfFast(src[j]);
      });
      c.inputs[i] = &in32[i];
    }
    for (size_t o = 0; o < ctx.outputs.size(); ++o) {
      if (o >= half_outputs_.size() || !half_outputs_[o] || !ctx.outputs[o]) continue;
      ITKIT_ASSIGN_OR_RETURN(out32[o], Tensor::Allocate(DType::kF32, ctx.outputs[o]->shape()));
      c.outputs[o] = &out32[o];
    }
    ITKIT_RETURN_IF_ERROR(inner_->Run(c));
    for (size_t o = 0; o < ctx.outputs.size(); ++o) {
      if (!out32[o].defined()) continue;
      const float* src = out32[o].data<float>();
      uint16_t* dst = ctx.outputs[o]->data<uint16_t>();
      ParallelFor(ctx.pool, out32[o].size(), 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) dst[j] = HalfFromFloatFast(src[j]);
      });
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<OpKernel> inner_;
  std::vector<bool> half_inputs_, half_outputs_;
};

// The kernel of factory F; when some inputs or outputs are f16, F's f32 kernel
// wrapped in an F16Adapter. For ops that compute in float (not data movement,
// which handles f16 directly, nor Cast).
template <KernelFactory F>
Result<std::unique_ptr<OpKernel>> WithF16(const NodeSignature& sig) {
  NodeSignature s32 = sig;
  std::vector<bool> half_in(sig.inputs.size(), false), half_out(sig.outputs.size(), false);
  bool any = false;
  for (size_t i = 0; i < sig.inputs.size(); ++i) {
    if (sig.inputs[i].dtype != DType::kF16) continue;
    half_in[i] = any = true;
    s32.inputs[i].dtype = DType::kF32;
    s32.inputs[i].constant = nullptr;  // f16 bytes; the f32 kernel reads values at run time
  }
  for (size_t o = 0; o < sig.outputs.size(); ++o) {
    if (sig.outputs[o].dtype != DType::kF16) continue;
    half_out[o] = any = true;
    s32.outputs[o].dtype = DType::kF32;
  }
  if (!any) return F(sig);
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> inner, F(s32));
  return std::unique_ptr<OpKernel>(std::make_unique<F16Adapter>(std::move(inner), half_in, half_out));
}

}  // namespace itkit::cpu
