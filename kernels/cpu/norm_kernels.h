// The norm family on the CPU: BatchNormalization, InstanceNormalization,
// LayerNormalization, itkit.GroupNorm and itkit.LayerNormAct.
// norm_reference.cpp: plain double-precision loops (the definition tests compare
// against); norm.cpp: the multi-threaded, vectorised kernels.
#pragma once

#include <cstdint>
#include <memory>

#include "cpu/fused_activation.h"
#include "itkit/backend.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

// x, y: [batch, channels, spatial] (spatial = product of the remaining axes).
struct GroupNormShape {
  int64_t batch = 0, channels = 0, spatial = 0, groups = 1;
};

// y = act((x - mean_g) / sqrt(var_g + eps) * scale[c] + bias[c] + residual), residual
// (itkit.GroupNorm's optional 4th input) of x's shape, or null for none.
void GroupNormReference(const GroupNormShape& s, const float* x, const float* scale, const float* bias, float eps,
                        const Activation& act, float* y, const float* residual = nullptr);
void GroupNormFast(const GroupNormShape& s, const float* x, const float* scale, const float* bias, float eps,
                   const Activation& act, float* y, ThreadPool* pool, const float* residual = nullptr);

// Rows of `row_size` elements normalised independently; scale/bias already expanded
// to row_size values (bias may be null). mean/inv_std (one per row) may be null.
void LayerNormReference(int64_t rows, int64_t row_size, const float* x, const float* scale, const float* bias,
                        float eps, const Activation& act, float* y, float* mean, float* inv_std);
void LayerNormFast(int64_t rows, int64_t row_size, const float* x, const float* scale, const float* bias,
                   float eps, const Activation& act, float* y, float* mean, float* inv_std, ThreadPool* pool);

// Inference BatchNormalization over [batch, channels, spatial].
void BatchNormReference(int64_t batch, int64_t channels, int64_t spatial, const float* x, const float* scale,
                        const float* bias, const float* mean, const float* var, float eps, float* y);

enum class NormImpl { kAuto, kReference };

// Any op of the family; kReference runs the reference loops (for tests/benchmarks).
Result<std::unique_ptr<OpKernel>> CreateNormKernel(const NodeSignature& sig, NormImpl impl);

}  // namespace itkit::cpu
