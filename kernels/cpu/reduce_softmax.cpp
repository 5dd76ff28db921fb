// CPU kernels of the reduction family, part 2: Softmax, LogSoftmax, Hardmax.
// Both opset conventions become [outer, n, inner]: opset >= 13 normalises along one
// axis (n = that dim, inner = the dims after it); earlier opsets flatten to 2-D at
// `axis` (n = product of the dims from axis on, inner = 1). The max is subtracted
// before exp (ExpOfNonPositive: vectorised, within 2 ulp of std::exp); sums accumulate
// in double. The inner > 1 path (softmax over the channel
// axis of NCDHW, the usual segmentation head) keeps a block of running maxima and sums
// over the contiguous inner axis instead of striding across channels per voxel.
#include <cmath>
#include <limits>

#include "cpu/cpu_ops.h"
#include "cpu/f16_adapter.h"
#include "cpu/fast_exp.h"
#include "cpu/nd_iter.h"

namespace itkit::cpu {
namespace {

enum class Norm { kSoftmax, kLogSoftmax, kHardmax };

constexpr int64_t kBlock = 256;

int64_t Grain(int64_t work) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, work)); }

// One row of n contiguous values.
template <Norm K>
void NormalizeRow(const float* x, float* y, int64_t n) {
  if constexpr (K == Norm::kHardmax) {
    int64_t best = 0;  // first maximum; a NaN wins like in ArgMax
    for (int64_t i = 1; i < n; ++i)
      if (x[i] > x[best] || (x[i] != x[i] && x[best] == x[best])) best = i;
    for (int64_t i = 0; i < n; ++i) y[i] = i == best ? 1.0f : 0.0f;
  } else {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;  // ignores NaN like fmax, vectorises
    double sum = 0.0;
    if constexpr (K == Norm::kSoftmax) {
      for (int64_t i = 0; i < n; ++i) y[i] = ExpOfNonPositive(x[i] - m);
      // Eight interleaved double sums: independent additions, a fixed order.
      double lane[8] = {};
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += y[i + l];
      for (; i < n; ++i) lane[0] += y[i];
      for (double v : lane) sum += v;
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t i = 0; i < n; ++i) y[i] *= inv;
    } else {
      for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - m);
      const float shift = m + static_cast<float>(std::log(sum));
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
    }
  }
}

// Up to kBlock columns j of an [n, inner] slab: y[i, j] over i for each j.
template <Norm K>
void NormalizeColumns(const float* x, float* y, int64_t n, int64_t inner, int64_t cols) {
  float m[kBlock];
  if constexpr (K == Norm::kHardmax) {
    int64_t arg[kBlock];
    for (int64_t j = 0; j < cols; ++j) m[j] = x[j], arg[j] = 0;
    for (int64_t i = 1; i < n; ++i) {
      const float* row = x + i * inner;
      for (int64_t j = 0; j < cols; ++j)
        if (row[j] > m[j] || (row[j] != row[j] && m[j] == m[j])) m[j] = row[j], arg[j] = i;
    }
    for (int64_t i = 0; i < n; ++i) {
      float* out = y + i * inner;
      for (int64_t j = 0; j < cols; ++j) out[j] = arg[j] == i ? 1.0f : 0.0f;
    }
  } else {
    double sum[kBlock];
    for (int64_t j = 0; j < cols; ++j) m[j] = -std::numeric_limits<float>::infinity(), sum[j] = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + i * inner;
      for (int64_t j = 0; j < cols; ++j) m[j] = row[j] > m[j] ? row[j] : m[j];
    }
    if constexpr (K == Norm::kSoftmax) {
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * inner;
        float* out = y + i * inner;
        for (int64_t j = 0; j < cols; ++j) {
          out[j] = ExpOfNonPositive(row[j] - m[j]);
          sum[j] += out[j];
        }
      }
      float inv[kBlock];
      for (int64_t j = 0; j < cols; ++j) inv[j] = static_cast<float>(1.0 / sum[j]);
      for (int64_t i = 0; i < n; ++i) {
        float* out = y + i * inner;
        for (int64_t j = 0; j < cols; ++j) out[j] *= inv[j];
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * inner;
        for (int64_t j = 0; j < cols; ++j) sum[j] += ExpOfNonPositive(row[j] - m[j]);
      }
      float shift[kBlock];
      for (int64_t j = 0; j < cols; ++j) shift[j] = m[j] + static_cast<float>(std::log(sum[j]));
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * inner;
        float* out = y + i * inner;
        for (int64_t j = 0; j < cols; ++j) out[j] = row[j] - shift[j];
      }
    }
  }
}

template <Norm K>
Result<std::unique_ptr<OpKernel>> CreateNorm(const NodeSignature& sig) {
  if (sig.inputs[0].dtype != DType::kF32)
    return Unsupported(sig.node->Describe(), ": dtype ", DTypeName(sig.inputs[0].dtype),
                       " is not supported by the CPU kernel");
  const Shape& in = sig.inputs[0].shape;
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t axis = sig.node->attrs.GetInt("axis", sig.opset >= 13 ? -1 : 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return InvalidArgument(sig.node->Describe(), ": axis is out of range");
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t v = in[static_cast<size_t>(d)];
    if (d < axis) outer *= v;
    else if (d == axis || sig.opset < 13) n *= v;  // before opset 13: flatten at axis
    else inner *= v;
  }
  return MakeKernel([outer, n, inner](KernelContext& ctx) {
    const float* x = ctx.inputs[0]->data<float>();
    float* y = ctx.outputs[0]->data<float>();
    if (n == 0) return Status::Ok();
    if (inner == 1) {
      ParallelFor(ctx.pool, outer, Grain(n), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) NormalizeRow<K>(x + o * n, y + o * n, n);
      });
    } else {
      const int64_t blocks = (inner + kBlock - 1) / kBlock;
      ParallelFor(ctx.pool, outer * blocks, Grain(n * std::min(inner, kBlock)), [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t o = t / blocks, j0 = (t % blocks) * kBlock;
          const int64_t offset = o * n * inner + j0;
          NormalizeColumns<K>(x + offset, y + offset, n, inner, std::min(kBlock, inner - j0));
        }
      });
    }
    return Status::Ok();
  });
}

}  // namespace

void AppendSoftmaxKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Softmax", &WithF16<&CreateNorm<Norm::kSoftmax>>});
  table.push_back({"", "LogSoftmax", &WithF16<&CreateNorm<Norm::kLogSoftmax>>});
  table.push_back({"", "Hardmax", &WithF16<&CreateNorm<Norm::kHardmax>>});
}

}  // namespace itkit::cpu
