// Normalisations with the following activation fused into the write:
//   itkit.GroupNorm (+ residual, + activation), InstanceNormalization (= GroupNorm with
//   one channel per group), BatchNormalization (inference: per-channel affine from
//   running stats). The residual (ResEnc's skip, X's shape) is read in the normalise pass.
// Statistics are Welford/Chan merges in f32 whatever the data dtype (f16 inputs too):
// a parallel partial pass over each group's contiguous elements, a merge per group,
// then one read-normalise-activate-write pass. nnU-Net's Conv -> InstanceNorm ->
// LeakyReLU thus costs two reads and one write of the activation.
#include <algorithm>

#include "cuda/common.cuh"

namespace itkit::cuda {
namespace {

struct NormStats {
  float mean, rstd;
};

__device__ __forceinline__ float LoadParam(const void* p, bool half, int64_t i) {
  return half ? __half2float(static_cast<const __half*>(p)[i]) : static_cast<const float*>(p)[i];
}

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

// ---- GroupNorm / InstanceNormalization ----------------------------------------------

bool HasResidual(const NodeSignature& sig) {
  return sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined;
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
  return true;
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
  // ~16K elements per partial block, at most 1024 partials per group.
  const int parts = static_cast<int>(std::clamp<int64_t>((M + 16383) / 16384, 1, 1024));
  const size_t partial_bytes = (static_cast<size_t>(groups * parts) * sizeof(Welford) + 255) / 256 * 256;
  const size_t workspace = partial_bytes + static_cast<size_t>(groups) * sizeof(NormStats);
  const DType dtype = sig.inputs[0].dtype;
  const bool residual = HasResidual(sig);
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
