// CPU kernels of the norm family. GroupNorm (and InstanceNorm = GroupNorm with one
// channel per group) is the hot one: nnU-Net normalises 32 x 128^3 activations
// after every conv. Two passes over memory: (1) per-chunk moments, chunks of 4 K
// elements so the second look at a chunk hits L1, merged per group in double
// (Chan et al.); (2) y = act(x * a_c + b_c [+ residual]) with a/b folded per channel.
// Both passes are parallel over chunks, so few large groups still use every thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/norm_kernels.h"

namespace itkit::cpu {
namespace {

constexpr int64_t kStatsChunk = 4096;   // floats per moments task (16 KiB, L1-resident)
constexpr int64_t kApplyChunk = 16384;  // floats per normalisation task

// 8 floats; GCC lowers it to one AVX register or two SSE registers. The helpers are
// always inlined, so the by-value ABI of 32-byte vectors (-Wpsabi) never matters.
typedef float V8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi"

inline V8 Load(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }
inline V8 Splat(float f) { return V8{f, f, f, f, f, f, f, f}; }
inline float Sum(V8 v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

struct Moments {
  double count = 0, mean = 0, m2 = 0;  // m2 = sum of squared deviations
};

// Chan et al.'s pairwise merge of two sets' moments.
inline Moments Merge(const Moments& a, const Moments& b) {
  if (a.count == 0) return b;
  if (b.count == 0) return a;
  Moments r;
  r.count = a.count + b.count;
  const double delta = b.mean - a.mean;
  r.mean = a.mean + delta * (b.count / r.count);
  r.m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / r.count);
  return r;
}

// Moments of one short run: a provisional mean m0, then the corrected two-pass
// form: mean = m0 + sum(d)/n, m2 = sum(d^2) - sum(d)^2/n with d = x - m0, which
// stays accurate when the mean is large against the spread.
__attribute__((target_clones("avx2", "default"))) Moments ChunkMoments(const float* x, int64_t n) {
  V8 s0 = Splat(0), s1 = Splat(0);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 += Load(x + i);
    s1 += Load(x + i + 8);
  }
  float sum = Sum(s0 + s1);
  for (; i < n; ++i) sum += x[i];
  const float m0 = sum / static_cast<float>(n);
  const V8 mv = Splat(m0);
  V8 d0 = Splat(0), d1 = Splat(0), q0 = Splat(0), q1 = Splat(0);
  for (i = 0; i + 16 <= n; i += 16) {
    const V8 a = Load(x + i) - mv, b = Load(x + i + 8) - mv;
    d0 += a;
    d1 += b;
    q0 += a * a;
    q1 += b * b;
  }
  float dsum = Sum(d0 + d1), qsum = Sum(q0 + q1);
  for (; i < n; ++i) {
    const float d = x[i] - m0;
    dsum += d;
    qsum += d * d;
  }
  Moments m;
  m.count = static_cast<double>(n);
  m.mean = m0 + static_cast<double>(dsum) / m.count;
  m.m2 = std::max(0.0, static_cast<double>(qsum) - static_cast<double>(dsum) * dsum / m.count);
  return m;
}

Moments RunMoments(const float* x, int64_t n) {
  Moments m;
  for (int64_t i = 0; i < n; i += kStatsChunk) m = Merge(m, ChunkMoments(x + i, std::min(kStatsChunk, n - i)));
  return m;
}

// y = act(x * a + b) over a contiguous run.
__attribute__((target_clones("avx2", "default"))) void AffineAct(const float* x, float a, float b,
                                                                  const Activation& act, float* y, int64_t n) {
  const V8 av = Splat(a), bv = Splat(b), zero = Splat(0), alpha = Splat(act.alpha);
  int64_t i = 0;
  if (act.kind == ActKind::kLeakyRelu || act.kind == ActKind::kRelu) {
    const V8 slope = act.kind == ActKind::kRelu ? zero : alpha;
    for (; i + 8 <= n; i += 8) {
      const V8 v = Load(x + i) * av + bv;
      Store(y + i, v >= zero ? v : v * slope);
    }
    for (; i < n; ++i) y[i] = ApplyActivation(act, x[i] * a + b);
    return;
  }
  for (; i + 8 <= n; i += 8) Store(y + i, Load(x + i) * av + bv);
  for (; i < n; ++i) y[i] = x[i] * a + b;
  ApplyActivation(act, y, n);  // kNone: no-op; others: scalar transcendental
}

// y = act(x * a + b + r) over a contiguous run (the residual GroupNorm).
__attribute__((target_clones("avx2", "default"))) void AffineResidualAct(const float* x, float a, float b,
                                                                          const float* r, const Activation& act,
                                                                          float* y, int64_t n) {
  const V8 av = Splat(a), bv = Splat(b), zero = Splat(0), alpha = Splat(act.alpha);
  int64_t i = 0;
  if (act.kind == ActKind::kLeakyRelu || act.kind == ActKind::kRelu) {
    const V8 slope = act.kind == ActKind::kRelu ? zero : alpha;
    for (; i + 8 <= n; i += 8) {
      const V8 v = Load(x + i) * av + bv + Load(r + i);
      Store(y + i, v >= zero ? v : v * slope);
    }
    for (; i < n; ++i) y[i] = ApplyActivation(act, x[i] * a + b + r[i]);
    return;
  }
  for (; i + 8 <= n; i += 8) Store(y + i, Load(x + i) * av + bv + Load(r + i));
  for (; i < n; ++i) y[i] = x[i] * a + b + r[i];
  ApplyActivation(act, y, n);
}

// Applies y = act(x * a[p] + b[p] [+ residual]) over `planes` contiguous planes of
// `plane` floats; `residual` (x's layout) may be null.
void ApplyPlanes(int64_t planes, int64_t plane, const float* x, const std::vector<float>& a,
                 const std::vector<float>& b, const Activation& act, float* y, ThreadPool* pool,
                 const float* residual = nullptr) {
  const int64_t per_plane = std::max<int64_t>(1, (plane + kApplyChunk - 1) / kApplyChunk);
  ParallelFor(pool, planes * per_plane, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, plane)),
              [&](int64_t begin, int64_t end) {
                for (int64_t t = begin; t < end; ++t) {
                  const int64_t p = t / per_plane, c = t % per_plane;
                  const int64_t off = c * kApplyChunk, n = std::min(kApplyChunk, plane - off);
                  if (n <= 0) continue;
                  const size_t ps = static_cast<size_t>(p);
                  const int64_t start = p * plane + off;
                  if (residual) {
                    AffineResidualAct(x + start, a[ps], b[ps], residual + start, act, y + start, n);
                  } else {
                    AffineAct(x + start, a[ps], b[ps], act, y + start, n);
                  }
                }
              });
}

}  // namespace

void GroupNormFast(const GroupNormShape& s, const float* x, const float* scale, const float* bias, float eps,
                   const Activation& act, float* y, ThreadPool* pool, const float* residual) {
  const int64_t cpg = s.channels / s.groups;
  const int64_t len = cpg * s.spatial;  // a group is contiguous
  const int64_t num_groups = s.batch * s.groups;
  if (num_groups == 0 || len == 0) return;
  const int64_t chunks = (len + kStatsChunk - 1) / kStatsChunk;
  std::vector<Moments> parts(static_cast<size_t>(num_groups * chunks));
  ParallelFor(pool, num_groups * chunks, 4, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g = t / chunks, off = (t % chunks) * kStatsChunk;
      parts[static_cast<size_t>(t)] = ChunkMoments(x + g * len + off, std::min(kStatsChunk, len - off));
    }
  });
  std::vector<float> a(static_cast<size_t>(s.batch * s.channels)), b(a.size());
  for (int64_t g = 0; g < num_groups; ++g) {
    Moments m;
    for (int64_t c = 0; c < chunks; ++c) m = Merge(m, parts[static_cast<size_t>(g * chunks + c)]);
    const double inv_std = 1.0 / std::sqrt(m.m2 / m.count + eps);
    for (int64_t c = 0; c < cpg; ++c) {
      const int64_t plane = g * cpg + c, ch = plane % s.channels;
      const double sc = scale[ch] * inv_std;
      a[static_cast<size_t>(plane)] = static_cast<float>(sc);
      b[static_cast<size_t>(plane)] = static_cast<float>(bias[ch] - m.mean * sc);
    }
  }
  ApplyPlanes(s.batch * s.channels, s.spatial, x, a, b, act, y, pool, residual);
}

void LayerNormFast(int64_t rows, int64_t row_size, const float* x, const float* scale, const float* bias,
                   float eps, const Activation& act, float* y, float* mean, float* inv_std, ThreadPool* pool) {
  ParallelFor(pool, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_size)),
              [&](int64_t begin, int64_t end) {
                for (int64_t r = begin; r < end; ++r) {
                  const float* xr = x + r * row_size;
                  float* yr = y + r * row_size;
                  const Moments m = RunMoments(xr, row_size);
                  const double is = 1.0 / std::sqrt((m.count > 0 ? m.m2 / m.count : 0.0) + eps);
                  const float mf = static_cast<float>(m.mean), isf = static_cast<float>(is);
                  for (int64_t i = 0; i < row_size; ++i)
                    yr[i] = (xr[i] - mf) * isf * scale[i] + (bias ? bias[i] : 0.0f);
                  ApplyActivation(act, yr, row_size);
                  if (mean) mean[r] = mf;
                  if (inv_std) inv_std[r] = isf;
                }
              });
}

namespace {

bool IsF32(const ValueDesc& d) { return d.dtype == DType::kF32 || d.dtype == DType::kUndefined; }

Status CheckF32(const NodeSignature& sig) {
  for (const ValueDesc& d : sig.inputs)
    if (!IsF32(d))
      return Unsupported(sig.node->Describe(), ": ", DTypeName(d.dtype), " normalisation is not supported on the CPU");
  return Status::Ok();
}

int64_t SpatialOf(const Shape& x) {
  int64_t s = 1;
  for (size_t i = 2; i < x.size(); ++i) s *= x[i];
  return s;
}

Result<std::unique_ptr<OpKernel>> CreateGroupNormLike(const NodeSignature& sig, NormImpl impl, int64_t groups) {
  const Node& node = *sig.node;
  const Shape& x = sig.inputs[0].shape;
  GroupNormShape s{x[0], x[1], SpatialOf(x), groups};
  if (groups <= 0 || s.channels % groups != 0) return InvalidArgument(node.Describe(), ": bad num_groups");
  if (sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined && sig.inputs[3].shape != x)
    return InvalidArgument(node.Describe(), ": the residual must have X's shape");
  Activation act;
  if (node.domain == kItkitDomain) {
    ITKIT_ASSIGN_OR_RETURN(act, ParseActivation(node));
  }
  const float eps = node.attrs.GetFloat("epsilon", 1e-5f);
  return std::unique_ptr<OpKernel>(MakeKernel([s, act, eps, impl](KernelContext& ctx) {
    const float* xp = ctx.inputs[0]->data<float>();
    const float* scale = ctx.inputs[1]->data<float>();
    const float* bias = ctx.inputs[2]->data<float>();
    const float* residual = ctx.inputs.size() > 3 && ctx.inputs[3] ? ctx.inputs[3]->data<float>() : nullptr;
    float* y = ctx.outputs[0]->data<float>();
    if (impl == NormImpl::kReference) {
      GroupNormReference(s, xp, scale, bias, eps, act, y, residual);
    } else {
      GroupNormFast(s, xp, scale, bias, eps, act, y, ctx.pool, residual);
    }
    return Status::Ok();
  }));
}

// Expands `t` (unidirectionally broadcastable to `target`) to target's element count.
std::vector<float> Expand(const Tensor& t, const Shape& target) {
  const int64_t n = ElementCount(target);
  std::vector<float> out(static_cast<size_t>(n));
  const size_t rank = target.size(), trank = t.shape().size();
  const std::vector<int64_t> tstrides = ContiguousStrides(t.shape());
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, src = 0;
    for (size_t a = rank; a-- > 0;) {
      const int64_t coord = rem % target[a];
      rem /= target[a];
      if (a + trank >= rank) {
        const size_t ta = a + trank - rank;
        if (t.shape()[ta] != 1) src += coord * tstrides[ta];
      }
    }
    out[static_cast<size_t>(i)] = t.data<float>()[src];
  }
  return out;
}

Result<std::unique_ptr<OpKernel>> CreateLayerNorm(const NodeSignature& sig, NormImpl impl) {
  const Node& node = *sig.node;
  const Shape& x = sig.inputs[0].shape;
  const int rank = static_cast<int>(x.size());
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(node.attrs.GetInt("axis", -1), rank, node));
  const Shape normalized(x.begin() + axis, x.end());
  int64_t rows = 1;
  for (int i = 0; i < axis; ++i) rows *= x[static_cast<size_t>(i)];
  const int64_t row_size = ElementCount(normalized);
  Activation act;
  if (node.domain == kItkitDomain) {
    ITKIT_ASSIGN_OR_RETURN(act, ParseActivation(node));
  }
  const float eps = node.attrs.GetFloat("epsilon", 1e-5f);
  return std::unique_ptr<OpKernel>(MakeKernel([=](KernelContext& ctx) {
    // Scale/bias are tiny next to X; expanding them per run keeps the kernel simple.
    const std::vector<float> scale = Expand(*ctx.inputs[1], normalized);
    std::vector<float> bias;
    if (ctx.inputs.size() > 2 && ctx.inputs[2]) bias = Expand(*ctx.inputs[2], normalized);
    const float* bp = bias.empty() ? nullptr : bias.data();
    float* mean = ctx.outputs.size() > 1 && ctx.outputs[1] ? ctx.outputs[1]->data<float>() : nullptr;
    float* inv_std = ctx.outputs.size() > 2 && ctx.outputs[2] ? ctx.outputs[2]->data<float>() : nullptr;
    const float* xp = ctx.inputs[0]->data<float>();
    float* y = ctx.outputs[0]->data<float>();
    if (impl == NormImpl::kReference) {
      LayerNormReference(rows, row_size, xp, scale.data(), bp, eps, act, y, mean, inv_std);
    } else {
      LayerNormFast(rows, row_size, xp, scale.data(), bp, eps, act, y, mean, inv_std, ctx.pool);
    }
    return Status::Ok();
  }));
}

Result<std::unique_ptr<OpKernel>> CreateBatchNorm(const NodeSignature& sig, NormImpl impl) {
  const Node& node = *sig.node;
  const Shape& x = sig.inputs[0].shape;
  const int64_t batch = x[0], channels = x[1], spatial = SpatialOf(x);
  const float eps = node.attrs.GetFloat("epsilon", 1e-5f);
  const float momentum = node.attrs.GetFloat("momentum", 0.9f);
  const bool training = node.attrs.GetInt("training_mode", 0) != 0 || (sig.opset < 14 && sig.outputs.size() > 1);
  return std::unique_ptr<OpKernel>(MakeKernel([=](KernelContext& ctx) {
    const float* xp = ctx.inputs[0]->data<float>();
    const float* scale = ctx.inputs[1]->data<float>();
    const float* bias = ctx.inputs[2]->data<float>();
    const float* in_mean = ctx.inputs[3]->data<float>();
    const float* in_var = ctx.inputs[4]->data<float>();
    float* y = ctx.outputs[0]->data<float>();
    std::vector<double> mean(static_cast<size_t>(channels)), var(mean.size());
    if (training) {
      // Batch statistics (biased variance) over N and the spatial axes; running
      // statistics blend the inputs with them by `momentum`. Rare: plain loops.
      for (int64_t c = 0; c < channels; ++c) {
        Moments m;
        for (int64_t n = 0; n < batch; ++n) m = Merge(m, RunMoments(xp + (n * channels + c) * spatial, spatial));
        mean[static_cast<size_t>(c)] = m.mean;
        var[static_cast<size_t>(c)] = m.count > 0 ? m.m2 / m.count : 0.0;
      }
      float* run_mean = ctx.outputs.size() > 1 && ctx.outputs[1] ? ctx.outputs[1]->data<float>() : nullptr;
      float* run_var = ctx.outputs.size() > 2 && ctx.outputs[2] ? ctx.outputs[2]->data<float>() : nullptr;
      for (int64_t c = 0; c < channels; ++c) {
        const size_t cs = static_cast<size_t>(c);
        if (run_mean) run_mean[c] = static_cast<float>(in_mean[c] * momentum + mean[cs] * (1.0 - momentum));
        if (run_var) run_var[c] = static_cast<float>(in_var[c] * momentum + var[cs] * (1.0 - momentum));
      }
    } else {
      if (impl == NormImpl::kReference) {
        BatchNormReference(batch, channels, spatial, xp, scale, bias, in_mean, in_var, eps, y);
        return Status::Ok();
      }
      for (int64_t c = 0; c < channels; ++c) {
        mean[static_cast<size_t>(c)] = in_mean[c];
        var[static_cast<size_t>(c)] = in_var[c];
      }
    }
    std::vector<float> a(static_cast<size_t>(batch * channels)), b(a.size());
    for (int64_t p = 0; p < batch * channels; ++p) {
      const size_t c = static_cast<size_t>(p % channels), ps = static_cast<size_t>(p);
      const double sc = scale[c] / std::sqrt(var[c] + eps);
      a[ps] = static_cast<float>(sc);
      b[ps] = static_cast<float>(bias[c] - mean[c] * sc);
    }
    ApplyPlanes(batch * channels, spatial, xp, a, b, Activation{}, y, ctx.pool);
    return Status::Ok();
  }));
}

Result<std::unique_ptr<OpKernel>> CreateAuto(const NodeSignature& sig) { return CreateNormKernel(sig, NormImpl::kAuto); }

}  // namespace

Result<std::unique_ptr<OpKernel>> CreateNormKernel(const NodeSignature& sig, NormImpl impl) {
  ITKIT_RETURN_IF_ERROR(CheckF32(sig));
  const Node& node = *sig.node;
  const std::string& op = node.op_type;
  if (op == "BatchNormalization") return CreateBatchNorm(sig, impl);
  if (op == "LayerNormalization" || op == "LayerNormAct") return CreateLayerNorm(sig, impl);
  if (sig.inputs[0].shape.size() < 2) return InvalidArgument(node.Describe(), ": X needs a channel axis");
  if (op == "InstanceNormalization") return CreateGroupNormLike(sig, impl, sig.inputs[0].shape[1]);
  if (op == "GroupNorm") {
    ITKIT_ASSIGN_OR_RETURN(int64_t groups, node.attrs.RequireInt("num_groups"));
    return CreateGroupNormLike(sig, impl, groups);
  }
  return Unsupported(node.Describe(), ": not a norm op");
}

void AppendNormKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "BatchNormalization", CreateAuto});
  table.push_back({"", "InstanceNormalization", CreateAuto});
  table.push_back({"", "LayerNormalization", CreateAuto});
  table.push_back({"itkit", "GroupNorm", CreateAuto});
  table.push_back({"itkit", "LayerNormAct", CreateAuto});
}

}  // namespace itkit::cpu
