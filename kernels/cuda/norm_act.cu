// Normalisations with the following activation fused into the write:
//   itkit.GroupNorm (+ residual, + activation), InstanceNormalization (= GroupNorm with
//   one channel per group), BatchNormalization (inference: per-channel affine from
//   running stats). The residual (ResEnc's skip, X's shape) is read in the normalise pass.
// Statistics are Welford/Chan merges in f32 whatever the data dtype (f16 inputs too):
// a parallel partial pass over each group's contiguous elements, a merge per group,
// then one read-normalise-activate-write pass. nnU-Net's Conv -> InstanceNorm ->
// LeakyReLU thus costs two reads and one write of the activation.
// GroupNorm/InstanceNorm also take channels-last values (NCDHW logically, NDHWC in
// memory): cuDNN's fast FP16 3-D convolutions are NDHWC, and keeping the values
// between them NDHWC saves a transpose on each side of every convolution. There the
// partial pass reads rows of channels (coalesced along C) and the normalise pass reads
// a per-(sample, channel) mean and scale.
#include <algorithm>

#include "cuda/common.cuh"

namespace itkit::cuda {
namespace {

struct NormStats {
  float mean, rstd;
};

__device__ Welford ShuffleDown(const Welford& w, int offset) {
  Welford o;
  o.count = __shfl_down_sync(0xffffffffu, w.count, offset);
  o.mean = __shfl_down_sync(0xffffffffu, w.mean, offset);
  o.m2 = __shfl_down_sync(0xffffffffu, w.m2, offset);
  return o;
}

// Merge over the block; the result is valid in thread 0. Every thread must call it.
__device__ Welford BlockMerge(Welford w) {
  __shared__ float warp_results[3][32];  // count, mean, m2 per warp (plain floats: no constructors in shared memory)
  for (int offset = 16; offset > 0; offset >>= 1) w = WelfordMerge(w, ShuffleDown(w, offset));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    warp_results[0][warp] = w.count;
    warp_results[1][warp] = w.mean;
    warp_results[2][warp] = w.m2;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    w = Welford{};
    if (lane < warps) {
      w.count = warp_results[0][lane];
      w.mean = warp_results[1][lane];
      w.m2 = warp_results[2][lane];
    }
    for (int offset = 16; offset > 0; offset >>= 1) w = WelfordMerge(w, ShuffleDown(w, offset));
  }
  __syncthreads();  // warp_results is reused by the caller's next group
  return w;
}

// Partial statistics: block (b, grp) covers chunk b of group grp's M contiguous elements.
template <typename T>
__global__ void PartialStatsKernel(const T* __restrict__ x, int64_t groups, int64_t M, int parts,
                                   Welford* __restrict__ partials) {
  const int64_t chunk = (M + parts - 1) / parts;
  for (int64_t grp = blockIdx.y; grp < groups; grp += gridDim.y) {
    const T* p = x + grp * M;
    const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
    const int64_t end = begin + chunk < M ? begin + chunk : M;
    Welford w;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) WelfordAdd(w, ToF(p[i]));
    w = BlockMerge(w);
    if (threadIdx.x == 0) partials[grp * parts + blockIdx.x] = w;
  }
}

// One block per group: merge its partials into mean and 1/sqrt(var + eps).
__global__ void FinalizeStatsKernel(const Welford* __restrict__ partials, int64_t groups, int parts, float epsilon,
                                    NormStats* __restrict__ stats) {
  for (int64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
    Welford w;
    for (int i = threadIdx.x; i < parts; i += blockDim.x) w = WelfordMerge(w, partials[grp * parts + i]);
    w = BlockMerge(w);
    if (threadIdx.x == 0) {
      const float var = w.count > 0.0f ? fmaxf(w.m2 / w.count, 0.0f) : 0.0f;  // biased, as ONNX defines it
      stats[grp] = NormStats{w.mean, rsqrtf(var + epsilon)};
    }
  }
}

// BatchNormalization: per-channel stats from the running mean/var inputs.
__global__ void BatchNormStatsKernel(const void* mean, const void* var, bool half, int64_t C, float epsilon,
                                     NormStats* __restrict__ stats) {
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x)
    stats[c] = NormStats{LoadParam(mean, half, c), rsqrtf(LoadParam(var, half, c) + epsilon)};
}

// y = act((x - mean) * rstd * gamma[c] + beta[c] [+ r]) over rows = N*C of S elements.
// Stats per (n, group) (channels_per_group > 0) or per channel (channels_per_group == 0).
// `residual` (x's layout) may be null.
template <typename T>
__global__ void NormApplyKernel(const T* __restrict__ x, const T* __restrict__ residual, T* __restrict__ y,
                                int64_t rows, int64_t C, int64_t S, int64_t channels_per_group,
                                const NormStats* __restrict__ stats, const void* gamma, const void* beta,
                                bool params_half, Act act, float alpha) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t n = row / C, c = row % C;
    const int64_t groups_per_sample = channels_per_group > 0 ? C / channels_per_group : 0;
    const NormStats st = channels_per_group > 0 ? stats[n * groups_per_sample + c / channels_per_group] : stats[c];
    const float scale = st.rstd * LoadParam(gamma, params_half, c);
    const float shift = LoadParam(beta, params_half, c);
    const T* src = x + row * S;
    const T* res = residual ? residual + row * S : nullptr;
    T* dst = y + row * S;
    for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float v = (ToF(src[s]) - st.mean) * scale + shift;
      dst[s] = FromF<T>(ApplyAct(res ? v + ToF(res[s]) : v, act, alpha));
    }
  }
}

template <typename T>
Status LaunchApply(const CudaContext& ctx, const T* x, const T* residual, T* y, int64_t N, int64_t C, int64_t S,
                   int64_t cpg, const NormStats* stats, const Tensor* gamma, const Tensor* beta, Act act,
                   float alpha) {
  const int64_t rows = N * C;
  // Enough blocks per row to fill the GPU even for few, long rows.
  const int64_t want_x = std::max<int64_t>(1, (int64_t{ctx.num_sms} * 8 + rows - 1) / rows);
  const unsigned gx = static_cast<unsigned>(std::min<int64_t>({want_x, (S + kThreads - 1) / kThreads, 4096}));
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  NormApplyKernel<T><<<dim3(std::max(gx, 1u), gy), kThreads, 0, ctx.stream>>>(
      x, residual, y, rows, C, S, cpg, stats, gamma->raw(), beta->raw(), gamma->dtype() == DType::kF16, act, alpha);
  ITKIT_CUDA_CHECK_LAUNCH("NormApplyKernel");
  return Status::Ok();
}

int64_t SpatialSize(const Shape& x) {
  int64_t s = 1;
  for (size_t i = 2; i < x.size(); ++i) s *= x[i];
  return s;
}

bool ParamsOk(const NodeSignature& sig, size_t first, size_t last, std::string* reason) {
  for (size_t i = first; i <= last; ++i) {
    if (i >= sig.inputs.size() || !IsF32OrF16(sig.inputs[i].dtype)) return Reject(reason, "input ", i, " dtype");
    if (sig.inputs[i].dtype != sig.inputs[first].dtype) return Reject(reason, "mixed parameter dtypes");
  }
  return true;
}

// ---- channels-last (physical [N][S][C], channel fastest) ------------------------------
// Stats: block (part, channel tile, n) covers rows [part's range) of a tile of W packs
// of P adjacent channels (W = min(C / P, 32)); its 256 threads are W lanes (coalesced
// along C) x R = 256 / W rows. P = 16 bytes' worth (8 f16 / 4 f32) when C is a multiple
// of it, else 2 (half2 / float2) when C is even.

constexpr int kClThreads = 256;
constexpr int kClRowsPerBlock = 256;  // at least this many rows per partial block

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int P>
__global__ void ChannelsLastPartialStatsKernel(const T* __restrict__ x, int64_t N, int64_t S, int64_t C,
                                               int parts, Welford* __restrict__ partials) {
  __shared__ float reduce[3][P][kClThreads];  // count, mean, m2 per thread and channel
  const int64_t row_packs = C / P;
  const int width = row_packs < 32 ? static_cast<int>(row_packs) : 32;
  const int rows_per_step = kClThreads / width;
  const int lane = threadIdx.x % width, row_in_step = threadIdx.x / width;
  int rows_pow2 = 1;
  while (rows_pow2 < rows_per_step) rows_pow2 <<= 1;
  const int64_t chunk = (S + parts - 1) / parts;
  const int64_t tiles = (row_packs + width - 1) / width;
  for (int64_t n = blockIdx.z; n < N; n += gridDim.z) {
    for (int64_t tile = blockIdx.y; tile < tiles; tile += gridDim.y) {
      const int64_t pack = tile * width + lane;
      const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk + row_in_step;
      const int64_t end = std::min<int64_t>((static_cast<int64_t>(blockIdx.x) + 1) * chunk, S);
      Welford w[P];
      if (pack < row_packs && row_in_step < rows_per_step && begin < end) {
        // Sums shifted by the thread's first value: cheap, and no cancellation when the
        // mean is large next to the spread (the per-element Welford division is not needed).
        const int64_t count = (end - begin + rows_per_step - 1) / rows_per_step;
        const auto* p = reinterpret_cast<const Pack<T, P>*>(x) + (n * S + begin) * row_packs + pack;
        const int64_t step = static_cast<int64_t>(rows_per_step) * row_packs;
        float shift[P], sum[P] = {}, sum_sq[P] = {};
        const Pack<T, P> first = p[0];
        for (int j = 0; j < P; ++j) shift[j] = ToF(first.v[j]);
#pragma unroll 8
        for (int64_t k = 0; k < count; ++k) {
          const Pack<T, P> v = p[k * step];
#pragma unroll
          for (int j = 0; j < P; ++j) {
            const float d = ToF(v.v[j]) - shift[j];
            sum[j] += d;
            sum_sq[j] += d * d;
          }
        }
        for (int j = 0; j < P; ++j) {
          w[j].count = static_cast<float>(count);
          w[j].mean = shift[j] + sum[j] / w[j].count;
          w[j].m2 = fmaxf(sum_sq[j] - sum[j] * sum[j] / w[j].count, 0.0f);
        }
      }
      for (int j = 0; j < P; ++j) {
        reduce[0][j][threadIdx.x] = w[j].count;
        reduce[1][j][threadIdx.x] = w[j].mean;
        reduce[2][j][threadIdx.x] = w[j].m2;
      }
      __syncthreads();
      // Tree over the rows of the step (R need not be a power of two).
      for (int stride = rows_pow2 / 2; stride > 0; stride >>= 1) {
        if (row_in_step < stride && row_in_step + stride < rows_per_step) {
          const int o = (row_in_step + stride) * width + lane;
          for (int j = 0; j < P; ++j) {
            w[j] = WelfordMerge(w[j], Welford{reduce[0][j][o], reduce[1][j][o], reduce[2][j][o]});
            reduce[0][j][threadIdx.x] = w[j].count;
            reduce[1][j][threadIdx.x] = w[j].mean;
            reduce[2][j][threadIdx.x] = w[j].m2;
          }
        }
        __syncthreads();
      }
      if (row_in_step == 0 && pack < row_packs)
        for (int j = 0; j < P; ++j) partials[(n * parts + blockIdx.x) * C + pack * P + j] = w[j];
    }
  }
}

bool AlignedTo(const void* p, size_t bytes) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Channels per thread of the partial pass: 16 bytes where C (and x's alignment, when
// given) allows (the pass is bound by reading x once; 4-byte loads left it short of the
// memory's bandwidth), else 2 or 1.
int StatsPack(int64_t C, size_t elem_bytes, const void* x = nullptr) {
  for (const int pack : {static_cast<int>(16 / elem_bytes), 2})
    if (C % pack == 0 && AlignedTo(x, static_cast<size_t>(pack) * elem_bytes)) return pack;
  return 1;
}

template <typename T>
Status LaunchChannelsLastStats(const CudaContext& ctx, const T* x, int64_t N, int64_t S, int64_t C, int parts,
                               Welford* partials) {
  const int pack = StatsPack(C, sizeof(T), x);
  const int64_t row_packs = C / pack, width = std::min<int64_t>(row_packs, 32);
  const dim3 grid(parts, static_cast<unsigned>(std::min<int64_t>((row_packs + width - 1) / width, 65535)),
                  static_cast<unsigned>(std::min<int64_t>(N, 65535)));
  constexpr int kWide = 16 / sizeof(T);
  if (pack == kWide)
    ChannelsLastPartialStatsKernel<T, kWide><<<grid, kClThreads, 0, ctx.stream>>>(x, N, S, C, parts, partials);
  else if (pack == 2)
    ChannelsLastPartialStatsKernel<T, 2><<<grid, kClThreads, 0, ctx.stream>>>(x, N, S, C, parts, partials);
  else
    ChannelsLastPartialStatsKernel<T, 1><<<grid, kClThreads, 0, ctx.stream>>>(x, N, S, C, parts, partials);
  ITKIT_CUDA_CHECK_LAUNCH("ChannelsLastPartialStatsKernel");
  return Status::Ok();
}

// One block per (n, group): merge its parts x channels_per_group partials, then write
// {mean, rstd * gamma[c]} for each of its channels (and beta[c] as f32, from n = 0).
// The mean stays apart rather than folded into a shift: x - mean is exact where x is
// close to the mean, x * scale - mean * scale is not.
__global__ void ChannelsLastFinalizeKernel(const Welford* __restrict__ partials, int64_t N, int64_t C, int64_t G,
                                           int parts, float epsilon, const void* gamma, const void* beta,
                                           bool params_half, float2* __restrict__ mean_scale,
                                           float* __restrict__ shift) {
  __shared__ NormStats group_stats;
  const int64_t cpg = C / G, items = static_cast<int64_t>(parts) * cpg;
  for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
    const int64_t n = ng / G, first_c = (ng % G) * cpg;
    Welford w;
    for (int64_t i = threadIdx.x; i < items; i += blockDim.x)
      w = WelfordMerge(w, partials[(n * parts + i / cpg) * C + first_c + i % cpg]);
    w = BlockMerge(w);
    if (threadIdx.x == 0) {
      const float var = w.count > 0.0f ? fmaxf(w.m2 / w.count, 0.0f) : 0.0f;  // biased, as ONNX defines it
      group_stats = NormStats{w.mean, rsqrtf(var + epsilon)};
    }
    __syncthreads();  // BlockMerge's barriers keep the next group's write after these reads
    for (int64_t i = threadIdx.x; i < cpg; i += blockDim.x) {
      const int64_t c = first_c + i;
      mean_scale[n * C + c] = make_float2(group_stats.mean, group_stats.rstd * LoadParam(gamma, params_half, c));
      if (n == 0) shift[c] = LoadParam(beta, params_half, c);
    }
  }
}

// y = act((x - mean[n, c]) * scale[n, c] + shift[c] [+ r]) in packs of V channels
// (C % V == 0). Grid row y = sample; the channel of a pack advances by a fixed step
// per iteration, so there is no per-element division. V >= 4: 16-byte parameter loads.
template <typename T, int V>
__global__ void ChannelsLastApplyKernel(const T* __restrict__ x, const T* __restrict__ residual,
                                        T* __restrict__ y, int64_t N, int64_t S, int64_t C,
                                        const float2* __restrict__ mean_scale, const float* __restrict__ shift,
                                        Act act, float alpha) {
  const int64_t packs = S * C / V;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first_c = first * V % C, c_step = stride * V % C;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const auto* src = reinterpret_cast<const Pack<T, V>*>(x + n * S * C);
    const auto* res = residual ? reinterpret_cast<const Pack<T, V>*>(residual + n * S * C) : nullptr;
    auto* dst = reinterpret_cast<Pack<T, V>*>(y + n * S * C);
    const float2* ms = mean_scale + n * C;
    int64_t c = first_c;
    for (int64_t i = first; i < packs; i += stride) {
      const Pack<T, V> in = src[i];
      Pack<T, V> r, out;
      if (res) r = res[i];
      float mean[V], scale[V], beta[V];
      if constexpr (V >= 4) {
#pragma unroll
        for (int k = 0; k < V; k += 2) {
          const float4 a = *reinterpret_cast<const float4*>(ms + c + k);
          mean[k] = a.x, scale[k] = a.y, mean[k + 1] = a.z, scale[k + 1] = a.w;
        }
#pragma unroll
        for (int k = 0; k < V; k += 4) {
          const float4 b = *reinterpret_cast<const float4*>(shift + c + k);
          beta[k] = b.x, beta[k + 1] = b.y, beta[k + 2] = b.z, beta[k + 3] = b.w;
        }
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) mean[k] = ms[c + k].x, scale[k] = ms[c + k].y, beta[k] = shift[c + k];
      }
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float v = (ToF(in.v[k]) - mean[k]) * scale[k] + beta[k];
        out.v[k] = FromF<T>(ApplyAct(res ? v + ToF(r.v[k]) : v, act, alpha));
      }
      dst[i] = out;
      c += c_step;
      if (c >= C) c -= C;
    }
  }
}

template <typename T, int V>
Status LaunchChannelsLastApply(const CudaContext& ctx, const T* x, const T* residual, T* y, int64_t N, int64_t S,
                               int64_t C, const float2* mean_scale, const float* shift, Act act, float alpha) {
  const int64_t packs = S * C / V;
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(N, 65535));
  // About 16 blocks per SM over the whole grid, never more than a sample's packs need.
  const int64_t want_x = std::max<int64_t>(1, int64_t{ctx.num_sms} * 16 / gy);
  const unsigned gx = static_cast<unsigned>(std::clamp<int64_t>((packs + kThreads - 1) / kThreads, 1, want_x));
  ChannelsLastApplyKernel<T, V><<<dim3(gx, gy), kThreads, 0, ctx.stream>>>(x, residual, y, N, S, C, mean_scale,
                                                                          shift, act, alpha);
  ITKIT_CUDA_CHECK_LAUNCH("ChannelsLastApplyKernel");
  return Status::Ok();
}

// Partial blocks along S: a few waves' worth over the whole grid, >= kClRowsPerBlock rows each.
int ChannelsLastParts(const CudaContext& ctx, int64_t N, int64_t S, int64_t C) {
  const int64_t tiles = (C / StatsPack(C, 2) + 31) / 32;  // the f16 pack: f32 runs as many parts or fewer
  const int64_t blocks_per_part = std::max<int64_t>(1, std::min<int64_t>(tiles, 65535) * std::min<int64_t>(N, 65535));
  const int64_t want = (int64_t{ctx.num_sms} * 8 + blocks_per_part - 1) / blocks_per_part;
  return static_cast<int>(std::clamp<int64_t>(std::min(want, S / kClRowsPerBlock), 1, 4096));
}

template <typename T>
Status RunChannelsLastGroupNorm(const CudaContext& ctx, const T* x, const T* residual, T* y, int64_t N, int64_t S,
                                int64_t C, int64_t G, int parts, float epsilon, const Tensor* gamma,
                                const Tensor* beta, Act act, float alpha, Welford* partials, float2* mean_scale,
                                float* shift) {
  ITKIT_RETURN_IF_ERROR(LaunchChannelsLastStats<T>(ctx, x, N, S, C, parts, partials));
  ChannelsLastFinalizeKernel<<<static_cast<unsigned>(std::min<int64_t>(N * G, 65535)), kThreads, 0, ctx.stream>>>(
      partials, N, C, G, parts, epsilon, gamma->raw(), beta->raw(), gamma->dtype() == DType::kF16, mean_scale,
      shift);
  ITKIT_CUDA_CHECK_LAUNCH("ChannelsLastFinalizeKernel");
  // 16-byte packs when every row and pointer allows them; one element at a time otherwise.
  constexpr int kPack = 16 / sizeof(T);
  if (C % kPack == 0 && AlignedTo(x, 16) && AlignedTo(residual, 16) && AlignedTo(y, 16))
    return LaunchChannelsLastApply<T, kPack>(ctx, x, residual, y, N, S, C, mean_scale, shift, act, alpha);
  return LaunchChannelsLastApply<T, 1>(ctx, x, residual, y, N, S, C, mean_scale, shift, act, alpha);
}

// ---- GroupNorm / InstanceNormalization ----------------------------------------------

bool HasResidual(const NodeSignature& sig) {
  return sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined;
}

bool IsChannelsLast(const NodeSignature& sig) {
  return sig.inputs[0].channels_last || (HasResidual(sig) && sig.inputs[3].channels_last) ||
         (!sig.outputs.empty() && sig.outputs[0].channels_last);
}

// X, the residual and Y share one layout; gamma and beta are plain [C] vectors.
bool LayoutOk(const NodeSignature& sig, std::string* reason) {
  if (sig.inputs[1].channels_last || sig.inputs[2].channels_last) return Reject(reason, "channels-last parameters");
  if (!IsChannelsLast(sig)) return true;
  if (!sig.inputs[0].channels_last || (HasResidual(sig) && !sig.inputs[3].channels_last) || sig.outputs.empty() ||
      !sig.outputs[0].channels_last)
    return Reject(reason, "X, residual and output mix channels-last and channels-first layouts");
  const size_t rank = sig.inputs[0].shape.size();
  if (rank < 3 || rank > 5) return Reject(reason, "channels-last rank ", rank, " (needs 3..5)");
  return true;
}

bool GroupNormSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  const bool instance = sig.node->op_type == "InstanceNormalization";
  if (sig.inputs.size() != 3 && (instance || sig.inputs.size() != 4))
    return Reject(reason, "needs X, scale, bias", instance ? "" : " and an optional residual");
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (!ParamsOk(sig, 1, 2, reason)) return false;
  if (sig.inputs[0].shape.size() < 2) return Reject(reason, "rank < 2");
  if (HasResidual(sig)) {
    if (sig.inputs[3].dtype != sig.inputs[0].dtype) return Reject(reason, "residual dtype differs from X's");
    if (sig.inputs[3].shape != sig.inputs[0].shape) return Reject(reason, "residual shape differs from X's");
  }
  float alpha;
  auto act = ParseActivation(*sig.node, &alpha);
  if (!act.ok()) return Reject(reason, act.status().message());
  const int64_t C = sig.inputs[0].shape[1];
  const int64_t groups = instance ? C : sig.node->attrs.GetInt("num_groups", 0);
  if (groups <= 0 || C % groups != 0) return Reject(reason, "num_groups ", groups, " does not divide ", C);
  return LayoutOk(sig, reason);
}

Result<std::unique_ptr<OpKernel>> CreateGroupNorm(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& x = sig.inputs[0].shape;
  const bool instance = sig.node->op_type == "InstanceNormalization";
  const int64_t N = x[0], C = x[1], S = SpatialSize(x);
  const int64_t G = instance ? C : sig.node->attrs.GetInt("num_groups", 0);
  const int64_t cpg = C / G, M = cpg * S, groups = N * G;
  const float epsilon = sig.node->attrs.GetFloat("epsilon", 1e-5f);
  float alpha = 0.01f;
  ITKIT_ASSIGN_OR_RETURN(Act act, ParseActivation(*sig.node, &alpha));
  const DType dtype = sig.inputs[0].dtype;
  const bool residual = HasResidual(sig);
  if (IsChannelsLast(sig)) {
    // Workspace: a Welford per (n, part, channel), a float2 {mean, scale} per (n, channel),
    // a float shift per channel; each array 256-byte aligned.
    const int parts = ChannelsLastParts(*ctx, N, S, C);
    const size_t partial_bytes = (static_cast<size_t>(N * parts * C) * sizeof(Welford) + 255) / 256 * 256;
    const size_t mean_scale_bytes = (static_cast<size_t>(N * C) * sizeof(float2) + 255) / 256 * 256;
    const size_t workspace = partial_bytes + mean_scale_bytes + static_cast<size_t>(C) * sizeof(float);
    auto run = [=, c = ctx.get()](KernelContext& kc) -> Status {
      if (kc.workspace_bytes < workspace) return Internal("GroupNorm workspace too small");
      if (N * C * S == 0) return Status::Ok();
      auto* partials = static_cast<Welford*>(kc.workspace);
      auto* mean_scale = reinterpret_cast<float2*>(static_cast<uint8_t*>(kc.workspace) + partial_bytes);
      auto* shift = reinterpret_cast<float*>(static_cast<uint8_t*>(kc.workspace) + partial_bytes + mean_scale_bytes);
      return DispatchFloat(dtype, [&]<typename T>() -> Status {
        return RunChannelsLastGroupNorm<T>(*c, kc.inputs[0]->data<T>(), residual ? kc.inputs[3]->data<T>() : nullptr,
                                           kc.outputs[0]->data<T>(), N, S, C, G, parts, epsilon, kc.inputs[1],
                                           kc.inputs[2], act, alpha, partials, mean_scale, shift);
      });
    };
    return MakeKernel(ctx, run, workspace);
  }
  // ~16K elements per partial block, at most 1024 partials per group.
  const int parts = static_cast<int>(std::clamp<int64_t>((M + 16383) / 16384, 1, 1024));
  const size_t partial_bytes = (static_cast<size_t>(groups * parts) * sizeof(Welford) + 255) / 256 * 256;
  const size_t workspace = partial_bytes + static_cast<size_t>(groups) * sizeof(NormStats);
  auto run = [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (kc.workspace_bytes < workspace) return Internal("GroupNorm workspace too small");
    auto* partials = static_cast<Welford*>(kc.workspace);
    auto* stats = reinterpret_cast<NormStats*>(static_cast<uint8_t*>(kc.workspace) + partial_bytes);
    if (N * C * S == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      const T* in = kc.inputs[0]->data<T>();
      PartialStatsKernel<T><<<dim3(parts, static_cast<unsigned>(std::min<int64_t>(groups, 65535))), kThreads, 0,
                              c->stream>>>(in, groups, M, parts, partials);
      ITKIT_CUDA_CHECK_LAUNCH("PartialStatsKernel");
      FinalizeStatsKernel<<<static_cast<unsigned>(std::min<int64_t>(groups, 65535)), kThreads, 0, c->stream>>>(
          partials, groups, parts, epsilon, stats);
      ITKIT_CUDA_CHECK_LAUNCH("FinalizeStatsKernel");
      const T* res = residual ? kc.inputs[3]->data<T>() : nullptr;
      return LaunchApply<T>(*c, in, res, kc.outputs[0]->data<T>(), N, C, S, cpg, stats, kc.inputs[1], kc.inputs[2],
                            act, alpha);
    });
  };
  return MakeKernel(ctx, run, workspace);
}

// ---- BatchNormalization (inference) ---------------------------------------------------

bool BatchNormSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.size() != 5) return Reject(reason, "needs 5 inputs");
  if (sig.node->outputs.size() > 1) return Reject(reason, "training outputs");
  if (sig.node->attrs.GetInt("training_mode", 0) != 0) return Reject(reason, "training_mode");
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (!ParamsOk(sig, 1, 4, reason)) return false;
  if (sig.inputs[0].shape.size() < 2) return Reject(reason, "rank < 2");
  for (const ValueDesc& v : sig.inputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  for (const ValueDesc& v : sig.outputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateBatchNorm(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& x = sig.inputs[0].shape;
  const int64_t N = x[0], C = x[1], S = SpatialSize(x);
  const float epsilon = sig.node->attrs.GetFloat("epsilon", 1e-5f);
  const DType dtype = sig.inputs[0].dtype;
  const size_t workspace = static_cast<size_t>(C) * sizeof(NormStats);
  auto run = [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (kc.workspace_bytes < workspace) return Internal("BatchNormalization workspace too small");
    if (N * C * S == 0) return Status::Ok();
    auto* stats = static_cast<NormStats*>(kc.workspace);
    BatchNormStatsKernel<<<GridFor(C, *c), kThreads, 0, c->stream>>>(
        kc.inputs[3]->raw(), kc.inputs[4]->raw(), kc.inputs[3]->dtype() == DType::kF16, C, epsilon, stats);
    ITKIT_CUDA_CHECK_LAUNCH("BatchNormStatsKernel");
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      return LaunchApply<T>(*c, kc.inputs[0]->data<T>(), nullptr, kc.outputs[0]->data<T>(), N, C, S, 0, stats,
                            kc.inputs[1], kc.inputs[2], Act::kNone, 0.0f);
    });
  };
  return MakeKernel(ctx, run, workspace);
}

}  // namespace

void AppendNormOps(std::vector<CudaOpEntry>& table) {
  table.push_back({kItkitDomain, "GroupNorm", GroupNormSupports, CreateGroupNorm});
  table.push_back({"", "InstanceNormalization", GroupNormSupports, CreateGroupNorm});
  table.push_back({"", "BatchNormalization", BatchNormSupports, CreateBatchNorm});
}

}  // namespace itkit::cuda
