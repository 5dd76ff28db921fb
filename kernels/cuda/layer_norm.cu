// LayerNormalization (opset 17) and itkit.LayerNormAct (the same with the following
// activation fused in, fuse_norm_activation) on the GPU. Transformer blocks (UNETR,
// SwinUNETR, SegFormer3D) normalise every token's features twice per block; on the CPU
// each of these nodes cost two copies across the bus in the middle of the GPU's work.
//
// X is rows = prod(shape[:axis]) of L = prod(shape[axis:]) contiguous elements. A warp
// takes a row when L <= kWarpRowMax (tokens' hidden sizes), a block when rows are long
// and many; a few long rows (nn.LayerNorm over [C, D, H, W]) are split over blocks:
// partial sums per piece, a finalize per row, then a normalise pass. Statistics: the
// mean, then the centred sum of squares over the row re-read from cache (no
// cancellation when the mean is far from zero), summed in double; the split path sums
// x and x^2 in double (enough for f32 data) to read the row once for its statistics.
// Mean and InvStdDev (outputs 1, 2) are written when the node asks for them.
#include <algorithm>

#include "cuda/block_reduce.cuh"
#include "cuda/common.cuh"

namespace itkit::cuda {
namespace {

constexpr int64_t kWarpRowMax = 1024;

struct Plus {
  __device__ double operator()(double a, double b) const { return a + b; }
};
__device__ __forceinline__ double WarpSum(double v) { return WarpReduce(v, Plus{}); }
// Sum over the block, returned to every thread. Every thread must call it.
__device__ __forceinline__ double BlockSum(double v) { return BlockReduce(v, Plus{}, 0.0); }

struct LayerNormArgs {
  int64_t rows = 0, L = 0;
  const void* scale = nullptr;  // L values
  const void* bias = nullptr;   // L values or null
  bool params_half = false;
  float epsilon = 1e-5f, alpha = 0.01f;
  Act act = Act::kNone;
  float* mean = nullptr;  // per row, optional
  float* inv_std = nullptr;
};

// The `count` threads of a warp or a block (this one is `lane` among them) normalise
// row r together; `sum` adds a value over exactly those threads and returns it to all.
template <typename T, typename SumFn>
__device__ __forceinline__ void NormaliseRow(const T* __restrict__ x, T* __restrict__ y, int64_t r, int lane,
                                             int count, const LayerNormArgs& a, SumFn sum) {
  const T* xr = x + r * a.L;
  T* yr = y + r * a.L;
  double s = 0.0;
  for (int64_t i = lane; i < a.L; i += count) s += ToF(xr[i]);
  const float mean = static_cast<float>(sum(s) / static_cast<double>(a.L));
  double q = 0.0;
  for (int64_t i = lane; i < a.L; i += count) {
    const float d = ToF(xr[i]) - mean;
    q += d * d;
  }
  // Biased variance, as ONNX defines it.
  const float inv_std = static_cast<float>(1.0 / sqrt(sum(q) / static_cast<double>(a.L) + a.epsilon));
  for (int64_t i = lane; i < a.L; i += count) {
    float v = (ToF(xr[i]) - mean) * inv_std * LoadParam(a.scale, a.params_half, i);
    if (a.bias) v += LoadParam(a.bias, a.params_half, i);
    yr[i] = FromF<T>(ApplyAct(v, a.act, a.alpha));
  }
  if (lane == 0) {
    if (a.mean) a.mean[r] = mean;
    if (a.inv_std) a.inv_std[r] = inv_std;
  }
}

template <typename T>
__global__ void LayerNormWarpRowsKernel(const T* __restrict__ x, T* __restrict__ y, LayerNormArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = blockDim.x >> 5;
  for (int64_t r = blockIdx.x * warps + (threadIdx.x >> 5); r < a.rows; r += gridDim.x * warps)
    NormaliseRow(x, y, r, lane, 32, a, [](double v) { return WarpSum(v); });
}

template <typename T>
__global__ void LayerNormBlockRowsKernel(const T* __restrict__ x, T* __restrict__ y, LayerNormArgs a) {
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x)
    NormaliseRow(x, y, r, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), a,
                 [](double v) { return BlockSum(v); });
}

// ---- a few long rows, each split over `parts` blocks --------------------------------

// Block (part, row) sums x and x^2 over its piece of the row.
template <typename T>
__global__ void LayerNormPartialSumsKernel(const T* __restrict__ x, int64_t L, int parts,
                                           double2* __restrict__ sums) {
  const int64_t row = blockIdx.y;
  const int64_t chunk = (L + parts - 1) / parts;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t end = begin + chunk < L ? begin + chunk : L;
  const T* xr = x + row * L;
  double s = 0.0, q = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double v = ToF(xr[i]);
    s += v;
    q += v * v;
  }
  s = BlockSum(s);
  q = BlockSum(q);
  if (threadIdx.x == 0) sums[row * parts + blockIdx.x] = make_double2(s, q);
}

// A thread per row: its pieces' sums, in order, into {mean, 1/sqrt(var + eps)}.
__global__ void LayerNormFinalizeKernel(const double2* __restrict__ sums, int64_t rows, int parts, LayerNormArgs a,
                                        float2* __restrict__ stats) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0, q = 0.0;
    for (int p = 0; p < parts; ++p) {
      s += sums[r * parts + p].x;
      q += sums[r * parts + p].y;
    }
    const double n = static_cast<double>(a.L), mean = s / n;
    const double var = q / n - mean * mean;
    const float inv_std = static_cast<float>(1.0 / sqrt((var > 0.0 ? var : 0.0) + a.epsilon));
    stats[r] = make_float2(static_cast<float>(mean), inv_std);
    if (a.mean) a.mean[r] = static_cast<float>(mean);
    if (a.inv_std) a.inv_std[r] = inv_std;
  }
}

// Grid row y = row of X; the blocks along x stride over its elements.
template <typename T>
__global__ void LayerNormApplyKernel(const T* __restrict__ x, T* __restrict__ y, const float2* __restrict__ stats,
                                     LayerNormArgs a) {
  const int64_t r = blockIdx.y;
  const float2 st = stats[r];
  const T* xr = x + r * a.L;
  T* yr = y + r * a.L;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.L;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = (ToF(xr[i]) - st.x) * st.y * LoadParam(a.scale, a.params_half, i);
    if (a.bias) v += LoadParam(a.bias, a.params_half, i);
    yr[i] = FromF<T>(ApplyAct(v, a.act, a.alpha));
  }
}

// How a node's rows are walked (chosen at plan time).
struct LayerNormPlan {
  enum Kind { kWarpRows, kBlockRows, kSplitRows } kind = kWarpRows;
  int parts = 1;  // kSplitRows: blocks per row
  size_t sums_bytes = 0, workspace = 0;
};

LayerNormPlan PlanLayerNorm(int64_t rows, int64_t L, int num_sms) {
  LayerNormPlan p;
  if (L <= kWarpRowMax) return p;
  // Fewer rows than blocks that fill the GPU twice over: split them (rows then fit a
  // grid's y dimension).
  if (rows >= 2 * static_cast<int64_t>(num_sms)) {
    p.kind = LayerNormPlan::kBlockRows;
    return p;
  }
  p.kind = LayerNormPlan::kSplitRows;
  const int64_t want = (4 * static_cast<int64_t>(num_sms) + rows - 1) / rows;  // ~4 blocks per SM in all
  const int64_t most = (L + 4095) / 4096;                                      // >= 4096 elements a piece
  p.parts = static_cast<int>(std::clamp<int64_t>(std::min(want, most), 1, 1024));
  p.sums_bytes = (static_cast<size_t>(rows * p.parts) * sizeof(double2) + 255) / 256 * 256;
  p.workspace = p.sums_bytes + static_cast<size_t>(rows) * sizeof(float2);
  return p;
}

// The parameter's shape without leading 1s equals the normalised shape's: one value per
// element of a row. (ONNX allows any unidirectional broadcast; models give full shapes.)
bool CoversRow(const Shape& param, const Shape& normalized) {
  auto strip = [](const Shape& s) {
    size_t i = 0;
    while (i < s.size() && s[i] == 1) ++i;
    return Shape(s.begin() + static_cast<std::ptrdiff_t>(i), s.end());
  };
  return strip(param) == strip(normalized);
}

bool LayerNormSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.size() < 2 || sig.inputs.size() > 3) return Reject(reason, "needs X, Scale and an optional B");
  const ValueDesc& x = sig.inputs[0];
  if (!IsF32OrF16(x.dtype)) return Reject(reason, "dtype ", DTypeName(x.dtype));
  for (const ValueDesc& v : sig.inputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  for (const ValueDesc& v : sig.outputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  const int rank = static_cast<int>(x.shape.size());
  if (rank < 1) return Reject(reason, "rank 0");
  int64_t axis = sig.node->attrs.GetInt("axis", -1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return Reject(reason, "axis out of range");
  if (sig.node->attrs.GetInt("stash_type", 1) != 1) return Reject(reason, "stash_type other than float");
  const Shape normalized(x.shape.begin() + axis, x.shape.end());
  for (size_t i = 1; i < sig.inputs.size(); ++i) {
    if (sig.inputs[i].dtype == DType::kUndefined) continue;  // B omitted
    if (!IsF32OrF16(sig.inputs[i].dtype)) return Reject(reason, "input ", i, " dtype");
    if (sig.inputs[i].dtype != sig.inputs[1].dtype) return Reject(reason, "Scale and B dtypes differ");
    if (!CoversRow(sig.inputs[i].shape, normalized))
      return Reject(reason, "input ", i, " shape ", ShapeToString(sig.inputs[i].shape), " broadcasts over ",
                    ShapeToString(normalized));
  }
  for (size_t o = 1; o < sig.outputs.size(); ++o)
    if (sig.outputs[o].dtype != DType::kUndefined && sig.outputs[o].dtype != DType::kF32)
      return Reject(reason, "output ", o, " dtype ", DTypeName(sig.outputs[o].dtype));
  if (ElementCount(x.shape) == 0) return Reject(reason, "empty X");  // the CPU writes its Mean/InvStdDev
  if (ElementCount(x.shape) > kMaxCudnnElements) return Reject(reason, "more than 2^31 elements");
  float alpha;
  auto act = ParseActivation(*sig.node, &alpha);
  if (!act.ok()) return Reject(reason, act.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateLayerNorm(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& x = sig.inputs[0].shape;
  const int rank = static_cast<int>(x.size());
  int64_t axis = sig.node->attrs.GetInt("axis", -1);
  if (axis < 0) axis += rank;
  LayerNormArgs args;
  args.rows = 1;
  args.L = 1;
  for (int64_t d = 0; d < rank; ++d) (d < axis ? args.rows : args.L) *= x[static_cast<size_t>(d)];
  args.epsilon = sig.node->attrs.GetFloat("epsilon", 1e-5f);
  ITKIT_ASSIGN_OR_RETURN(args.act, ParseActivation(*sig.node, &args.alpha));
  const DType dtype = sig.inputs[0].dtype;
  const bool has_bias = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined;
  const LayerNormPlan plan = PlanLayerNorm(args.rows, args.L, ctx->num_sms);
  auto run = [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (args.rows * args.L == 0) return Status::Ok();
    if (kc.workspace_bytes < plan.workspace) return Internal("LayerNormalization workspace too small");
    LayerNormArgs a = args;  // this run's pointers
    a.scale = kc.inputs[1]->raw();
    a.params_half = kc.inputs[1]->dtype() == DType::kF16;
    a.bias = has_bias && kc.inputs.size() > 2 && kc.inputs[2] ? kc.inputs[2]->raw() : nullptr;
    a.mean = kc.outputs.size() > 1 && kc.outputs[1] ? kc.outputs[1]->data<float>() : nullptr;
    a.inv_std = kc.outputs.size() > 2 && kc.outputs[2] ? kc.outputs[2]->data<float>() : nullptr;
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      const T* in = kc.inputs[0]->data<T>();
      T* out = kc.outputs[0]->data<T>();
      switch (plan.kind) {
        case LayerNormPlan::kWarpRows: {
          constexpr int64_t kWarpsPerBlock = kThreads / 32;
          const unsigned grid = GridFor((a.rows + kWarpsPerBlock - 1) / kWarpsPerBlock * kThreads, *c);
          LayerNormWarpRowsKernel<T><<<grid, kThreads, 0, c->stream>>>(in, out, a);
          ITKIT_CUDA_CHECK_LAUNCH("LayerNormWarpRowsKernel");
          break;
        }
        case LayerNormPlan::kBlockRows: {
          const unsigned grid = static_cast<unsigned>(std::min<int64_t>(a.rows, int64_t{c->num_sms} * 32));
          LayerNormBlockRowsKernel<T><<<grid, kThreads, 0, c->stream>>>(in, out, a);
          ITKIT_CUDA_CHECK_LAUNCH("LayerNormBlockRowsKernel");
          break;
        }
        case LayerNormPlan::kSplitRows: {
          auto* sums = static_cast<double2*>(kc.workspace);
          auto* stats = reinterpret_cast<float2*>(static_cast<uint8_t*>(kc.workspace) + plan.sums_bytes);
          const unsigned rows = static_cast<unsigned>(a.rows);  // < 2 * SMs here
          LayerNormPartialSumsKernel<T><<<dim3(static_cast<unsigned>(plan.parts), rows), kThreads, 0, c->stream>>>(
              in, a.L, plan.parts, sums);
          ITKIT_CUDA_CHECK_LAUNCH("LayerNormPartialSumsKernel");
          LayerNormFinalizeKernel<<<GridFor(a.rows, *c), kThreads, 0, c->stream>>>(sums, a.rows, plan.parts, a,
                                                                                   stats);
          ITKIT_CUDA_CHECK_LAUNCH("LayerNormFinalizeKernel");
          const int64_t per_row = (4 * static_cast<int64_t>(c->num_sms) + a.rows - 1) / a.rows;
          const unsigned gx = static_cast<unsigned>(std::clamp<int64_t>(
              std::min<int64_t>(per_row, (a.L + kThreads - 1) / kThreads), 1, 4096));
          LayerNormApplyKernel<T><<<dim3(gx, rows), kThreads, 0, c->stream>>>(in, out, stats, a);
          ITKIT_CUDA_CHECK_LAUNCH("LayerNormApplyKernel");
          break;
        }
      }
      return Status::Ok();
    });
  };
  return MakeKernel(ctx, run, plan.workspace);
}

}  // namespace

void AppendLayerNormOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "LayerNormalization", LayerNormSupports, CreateLayerNorm});
  table.push_back({kItkitDomain, "LayerNormAct", LayerNormSupports, CreateLayerNorm});
}

}  // namespace itkit::cuda
