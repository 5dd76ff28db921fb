// The scalar math of itkit.FusedElementwise on the GPU (fused_elementwise.cu): one
// instruction of the register program (itkit/fused_elementwise.h) on f32 values.
// Plain C++ with ITKIT_HD like kernel_math.h, so tests/ops checks this exact code
// against the CPU kernel on a machine without a GPU.
#pragma once

#include "cuda/kernel_math.h"
#include "itkit/fused_elementwise.h"

namespace itkit::cuda {

ITKIT_HD float Clamp01(float v) { return fminf(fmaxf(v, 0.0f), 1.0f); }

// Selects rather than fmaxf/fminf where the CPU keeps NaN (Relu, Max, Min, Clip).
ITKIT_HD float FusedOp(fused::OpCode op, float a, float b, float p, float q) {
  switch (op) {
    case fused::OpCode::kRelu: return a < 0.0f ? 0.0f : a;
    case fused::OpCode::kLeakyRelu: return a < 0.0f ? a * p : a;
    case fused::OpCode::kSigmoid: return 1.0f / (1.0f + expf(-a));
    case fused::OpCode::kTanh: return tanhf(a);
    case fused::OpCode::kErf: return erff(a);
    case fused::OpCode::kExp: return expf(a);
    case fused::OpCode::kLog: return logf(a);
    case fused::OpCode::kSqrt: return sqrtf(a);
    case fused::OpCode::kAbs: return fabsf(a);
    case fused::OpCode::kNeg: return -a;
    case fused::OpCode::kReciprocal: return 1.0f / a;
    case fused::OpCode::kFloor: return floorf(a);
    case fused::OpCode::kCeil: return ceilf(a);
    case fused::OpCode::kRound: return rintf(a);  // half to even
    case fused::OpCode::kSoftplus: return a > 0.0f ? a + log1pf(expf(-a)) : log1pf(expf(a));
    case fused::OpCode::kSoftsign: return a / (1.0f + fabsf(a));
    case fused::OpCode::kElu: return a >= 0.0f ? a : p * expm1f(a);
    case fused::OpCode::kSelu: return a > 0.0f ? q * a : q * p * expm1f(a);
    case fused::OpCode::kHardSigmoid: return Clamp01(p * a + q);
    case fused::OpCode::kHardSwish: return a * Clamp01(a / 6.0f + 0.5f);
    case fused::OpCode::kSin: return sinf(a);
    case fused::OpCode::kCos: return cosf(a);
    case fused::OpCode::kClip: {
      const float lo = a < p ? p : a;
      return q < lo ? q : lo;
    }
    case fused::OpCode::kAdd: return a + b;
    case fused::OpCode::kSub: return a - b;
    case fused::OpCode::kMul: return a * b;
    case fused::OpCode::kDiv: return a / b;
    case fused::OpCode::kPow: return b == 2.0f ? a * a : powf(a, b);
    case fused::OpCode::kMax: return (a > b || a != a) ? a : b;
    case fused::OpCode::kMin: return (a < b || a != a) ? a : b;
    case fused::OpCode::kPRelu: return a < 0.0f ? a * b : a;
  }
  return a;
}

}  // namespace itkit::cuda
