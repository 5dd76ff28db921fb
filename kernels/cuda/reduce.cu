// Reduce{Sum, Mean, Max, Min, Prod, SumSquare, L1, L2, LogSum, LogSumExp} on float
// data over axes known at plan time. Hand-written channel-first LayerNorms
// (ConvNeXt/MedNeXt style: ReduceMean over the channel axis, op_layernorm_decomposed in
// the zoo) and pooled attention statistics otherwise leave the GPU for these nodes.
//
// Each output is pre-map, combine, post-map of its reduced elements, accumulated in
// double as the CPU kernel does (kernels/cpu/reduce.cpp), so sums over whole volumes
// keep f32's precision; Max/Min propagate NaN. Two walks:
//  * rows: the reduced axes are one contiguous block at the end (after dropping size-1
//    axes and merging neighbours): a warp per output reads its row coalesced;
//  * anything else: a thread per output walks its reduced sub-box with an odometer;
//    neighbouring outputs are neighbours in memory whenever the last axis is kept
//    (e.g. the channel axis of NCDHW reduced), so the reads coalesce across threads;
//  * few outputs with long reductions (a whole-volume mean, squeeze-excitation's pooled
//    channels), which would leave most of the GPU idle: each output split over blocks
//    that write partial results, combined in order per output (deterministic).
#include <algorithm>
#include <vector>

#include "cuda/block_reduce.cuh"
#include "cuda/common.cuh"
#include "shape_infer/reduce_axes.h"

namespace itkit::cuda {
namespace {

enum class Red : int { kSum, kMean, kMax, kMin, kProd, kSumSquare, kL1, kL2, kLogSum, kLogSumExp };

template <Red K>
struct ReduceOp {
  __device__ double operator()(double acc, double v) const { return Combine(acc, v); }  // for WarpReduce
  __device__ static double Init() {
    if constexpr (K == Red::kProd) return 1.0;
    else if constexpr (K == Red::kMax) return -INFINITY;
    else if constexpr (K == Red::kMin) return INFINITY;
    else return 0.0;
  }
  __device__ static double Pre(double v) {
    if constexpr (K == Red::kSumSquare || K == Red::kL2) return v * v;
    else if constexpr (K == Red::kL1) return fabs(v);
    else if constexpr (K == Red::kLogSumExp) return exp(v);
    else return v;
  }
  __device__ static double Combine(double acc, double v) {
    if constexpr (K == Red::kMax) return (v > acc || v != v) ? v : acc;  // NaN wins, as numpy's amax
    else if constexpr (K == Red::kMin) return (v < acc || v != v) ? v : acc;
    else if constexpr (K == Red::kProd) return acc * v;
    else return acc + v;
  }
  __device__ static double Post(double acc, int64_t count) {
    if constexpr (K == Red::kMean) return acc / static_cast<double>(count);
    else if constexpr (K == Red::kL2) return sqrt(acc);
    else if constexpr (K == Red::kLogSum || K == Red::kLogSumExp) return log(acc);
    else return acc;
  }
};

// The input seen as kept axes (the output's, in order) and reduced axes, each with its
// input stride; size-1 axes dropped and contiguous neighbours merged.
struct ReduceWalk {
  Dims kept, kept_stride, red, red_stride;
  int64_t outputs = 1, count = 1;
  bool rows = false;  // one reduced axis of stride 1, after every kept axis
};

// Offset of element i of a row-major walk over `dims` with these input strides.
__device__ __forceinline__ int64_t OffsetOf(const Dims& dims, const Dims& stride, int64_t i) {
  int64_t off = 0;
  for (int d = dims.rank - 1; d >= 0; --d) {
    off += (i % dims.d[d]) * stride.d[d];
    i /= dims.d[d];
  }
  return off;
}

// Where output o's reduced elements start.
__device__ __forceinline__ int64_t KeptBase(const ReduceWalk& w, int64_t o) {
  return OffsetOf(w.kept, w.kept_stride, o);
}

template <Red K, typename T>
__global__ void ReduceRowsKernel(const T* __restrict__ x, T* __restrict__ y, ReduceWalk w) {
  using Op = ReduceOp<K>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = blockDim.x >> 5;
  const int64_t r = w.count;
  for (int64_t o = blockIdx.x * warps + (threadIdx.x >> 5); o < w.outputs; o += gridDim.x * warps) {
    const T* row = x + KeptBase(w, o);
    double acc = Op::Init();
    for (int64_t i = lane; i < r; i += 32) acc = Op::Combine(acc, Op::Pre(static_cast<double>(ToF(row[i]))));
    acc = WarpReduce(acc, Op{});
    if (lane == 0) y[o] = FromF<T>(static_cast<float>(Op::Post(acc, w.count)));
  }
}

template <Red K, typename T>
__global__ void ReduceBoxKernel(const T* __restrict__ x, T* __restrict__ y, ReduceWalk w) {
  using Op = ReduceOp<K>;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < w.outputs;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = KeptBase(w, o);
    int64_t idx[kMaxDims] = {};
    int64_t off = 0;
    double acc = Op::Init();
    for (int64_t i = 0; i < w.count; ++i) {
      acc = Op::Combine(acc, Op::Pre(static_cast<double>(ToF(x[base + off]))));
      for (int d = w.red.rank - 1; d >= 0; --d) {  // odometer over the reduced axes
        off += w.red_stride.d[d];
        if (++idx[d] < w.red.d[d]) break;
        off -= w.red_stride.d[d] * w.red.d[d];
        idx[d] = 0;
      }
    }
    y[o] = FromF<T>(static_cast<float>(Op::Post(acc, w.count)));
  }
}

// Offset of reduced element i (row-major over the reduced axes) from its output's base.
__device__ __forceinline__ int64_t ReducedOffset(const ReduceWalk& w, int64_t i) {
  return OffsetOf(w.red, w.red_stride, i);
}

// Block (part, output row y) combines its piece of each of its outputs' elements.
template <Red K, typename T>
__global__ void ReducePartialKernel(const T* __restrict__ x, double* __restrict__ partials, ReduceWalk w,
                                    int parts) {
  using Op = ReduceOp<K>;
  const int64_t chunk = (w.count + parts - 1) / parts;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t end = begin + chunk < w.count ? begin + chunk : w.count;
  for (int64_t o = blockIdx.y; o < w.outputs; o += gridDim.y) {
    const T* base = x + KeptBase(w, o);
    double acc = Op::Init();
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
      acc = Op::Combine(acc, Op::Pre(static_cast<double>(ToF(base[ReducedOffset(w, i)]))));
    acc = BlockReduce(acc, Op{}, Op::Init());
    if (threadIdx.x == 0) partials[o * parts + blockIdx.x] = acc;
  }
}

// A thread per output: its parts in order, then the post-map.
template <Red K, typename T>
__global__ void ReduceFinalizeKernel(const double* __restrict__ partials, T* __restrict__ y, ReduceWalk w,
                                     int parts) {
  using Op = ReduceOp<K>;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < w.outputs;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double acc = partials[o * parts];
    for (int p = 1; p < parts; ++p) acc = Op::Combine(acc, partials[o * parts + p]);
    y[o] = FromF<T>(static_cast<float>(Op::Post(acc, w.count)));
  }
}

Result<Red> KindOf(const Node& node) {
  static const std::pair<const char*, Red> kOps[] = {
      {"ReduceSum", Red::kSum},   {"ReduceMean", Red::kMean},       {"ReduceMax", Red::kMax},
      {"ReduceMin", Red::kMin},   {"ReduceProd", Red::kProd},       {"ReduceSumSquare", Red::kSumSquare},
      {"ReduceL1", Red::kL1},     {"ReduceL2", Red::kL2},           {"ReduceLogSum", Red::kLogSum},
      {"ReduceLogSumExp", Red::kLogSumExp}};
  for (const auto& [name, kind] : kOps)
    if (node.op_type == name) return kind;
  return Unsupported(node.Describe(), ": not a reduction");
}

// Which axes are reduced (shape_infer/reduce_axes.h): the `axes` attribute (before
// opset 18; ReduceSum's until 13), else the constant second input.
Result<std::vector<bool>> ReducedAxes(const NodeSignature& sig) {
  const Node& node = *sig.node;
  const int rank = static_cast<int>(sig.inputs[0].shape.size());
  std::vector<int64_t> axes;
  if (node.attrs.Has("axes")) {
    axes = node.attrs.GetInts("axes");
  } else if (sig.inputs.size() > 1 && sig.inputs[1].dtype != DType::kUndefined) {
    const Tensor* t = sig.inputs[1].constant;
    if (!t || t->dtype() != DType::kI64) return Unsupported(node.Describe(), ": axes computed at run time");
    axes.assign(t->data<int64_t>(), t->data<int64_t>() + t->size());
  }
  return shape_rules::ReducedAxesMask(rank, axes, node.attrs.GetInt("noop_with_empty_axes", 0) != 0, node);
}

ReduceWalk MakeWalk(const Shape& x, const std::vector<bool>& reduced) {
  ReduceWalk w;
  const std::vector<int64_t> strides = ContiguousStrides(x);
  bool last_reduced = false, any = false;
  for (size_t d = 0; d < x.size(); ++d) {
    if (reduced[d]) w.count *= x[d];
    else w.outputs *= x[d];
    if (x[d] == 1) continue;
    Dims& dims = reduced[d] ? w.red : w.kept;
    Dims& step = reduced[d] ? w.red_stride : w.kept_stride;
    // Merge with the previous axis of the same kind when they are adjacent in memory.
    if (any && last_reduced == reduced[d] && step.d[dims.rank - 1] == x[d] * strides[d]) {
      dims.d[dims.rank - 1] *= x[d];
      step.d[step.rank - 1] = strides[d];
    } else {
      dims.d[dims.rank] = x[d];
      step.d[step.rank] = strides[d];
      ++dims.rank;
      ++step.rank;
    }
    last_reduced = reduced[d];
    any = true;
  }
  w.rows = w.red.rank == 1 && w.red_stride.d[0] == 1 && w.count >= 32;
  return w;
}

// Blocks per output for the split walk, or 1 when the plain walks keep the GPU busy:
// they run one warp (rows) or one thread per output, so fewer outputs than ~a thousand
// threads per SM leave it idle. Each part gets >= 2048 elements.
int SplitParts(const ReduceWalk& w, int num_sms) {
  const int64_t threads = w.rows ? w.outputs * 32 : w.outputs;
  if (w.count < 4096 || threads >= static_cast<int64_t>(num_sms) * 1024) return 1;
  const int64_t want = (4 * static_cast<int64_t>(num_sms) + w.outputs - 1) / w.outputs;  // ~4 blocks per SM
  return static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(want, w.count / 2048), 1, 1024));
}

bool ReduceSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.empty() || sig.inputs.size() > 2) return Reject(reason, "needs data and optional axes");
  if (!KindOf(*sig.node).ok()) return Reject(reason, "not a reduction");
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (sig.outputs.empty() || sig.outputs[0].dtype != sig.inputs[0].dtype) return Reject(reason, "output dtype");
  for (const ValueDesc& v : sig.inputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  if (sig.outputs[0].channels_last) return Reject(reason, "channels-last");
  const Shape& x = sig.inputs[0].shape;
  if (x.size() > static_cast<size_t>(kMaxDims)) return Reject(reason, "rank ", x.size(), " > ", kMaxDims);
  if (ElementCount(x) == 0) return Reject(reason, "empty input");
  if (ElementCount(x) > kMaxCudnnElements) return Reject(reason, "more than 2^31 elements");
  auto reduced = ReducedAxes(sig);
  if (!reduced.ok()) return Reject(reason, reduced.status().message());
  return true;
}

template <Red K, typename T>
Status LaunchReduce(const CudaContext& ctx, const T* x, T* y, const ReduceWalk& w, int parts, double* partials) {
  if (parts > 1) {
    const unsigned rows = static_cast<unsigned>(std::min<int64_t>(w.outputs, 65535));
    ReducePartialKernel<K, T><<<dim3(static_cast<unsigned>(parts), rows), kThreads, 0, ctx.stream>>>(x, partials, w,
                                                                                                     parts);
    ITKIT_CUDA_CHECK_LAUNCH("ReducePartialKernel");
    ReduceFinalizeKernel<K, T><<<GridFor(w.outputs, ctx), kThreads, 0, ctx.stream>>>(partials, y, w, parts);
    ITKIT_CUDA_CHECK_LAUNCH("ReduceFinalizeKernel");
  } else if (w.rows) {
    constexpr int64_t kWarpsPerBlock = kThreads / 32;
    ReduceRowsKernel<K, T><<<GridFor((w.outputs + kWarpsPerBlock - 1) / kWarpsPerBlock * kThreads, ctx), kThreads, 0,
                             ctx.stream>>>(x, y, w);
    ITKIT_CUDA_CHECK_LAUNCH("ReduceRowsKernel");
  } else {
    ReduceBoxKernel<K, T><<<GridFor(w.outputs, ctx), kThreads, 0, ctx.stream>>>(x, y, w);
    ITKIT_CUDA_CHECK_LAUNCH("ReduceBoxKernel");
  }
  return Status::Ok();
}

template <typename T>
Status DispatchReduce(Red kind, const CudaContext& ctx, const T* x, T* y, const ReduceWalk& w, int parts,
                      double* partials) {
  switch (kind) {
    case Red::kSum: return LaunchReduce<Red::kSum>(ctx, x, y, w, parts, partials);
    case Red::kMean: return LaunchReduce<Red::kMean>(ctx, x, y, w, parts, partials);
    case Red::kMax: return LaunchReduce<Red::kMax>(ctx, x, y, w, parts, partials);
    case Red::kMin: return LaunchReduce<Red::kMin>(ctx, x, y, w, parts, partials);
    case Red::kProd: return LaunchReduce<Red::kProd>(ctx, x, y, w, parts, partials);
    case Red::kSumSquare: return LaunchReduce<Red::kSumSquare>(ctx, x, y, w, parts, partials);
    case Red::kL1: return LaunchReduce<Red::kL1>(ctx, x, y, w, parts, partials);
    case Red::kL2: return LaunchReduce<Red::kL2>(ctx, x, y, w, parts, partials);
    case Red::kLogSum: return LaunchReduce<Red::kLogSum>(ctx, x, y, w, parts, partials);
    case Red::kLogSumExp: return LaunchReduce<Red::kLogSumExp>(ctx, x, y, w, parts, partials);
  }
  return Internal("reduction kind ", static_cast<int>(kind));
}

Result<std::unique_ptr<OpKernel>> CreateReduce(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(Red kind, KindOf(*sig.node));
  ITKIT_ASSIGN_OR_RETURN(std::vector<bool> reduced, ReducedAxes(sig));
  const ReduceWalk walk = MakeWalk(sig.inputs[0].shape, reduced);
  const int parts = SplitParts(walk, ctx->num_sms);
  const size_t workspace = parts > 1 ? static_cast<size_t>(walk.outputs * parts) * sizeof(double) : 0;
  const DType dtype = sig.inputs[0].dtype;
  // With noop_with_empty_axes and no axes nothing is reduced: each output is its own
  // element, pre- and post-mapped (ReduceSumSquare squares it), as ONNX and the CPU do.
  auto run = [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (kc.workspace_bytes < workspace) return Internal("reduction workspace too small");
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      return DispatchReduce<T>(kind, *c, kc.inputs[0]->data<T>(), kc.outputs[0]->data<T>(), walk, parts,
                               static_cast<double*>(kc.workspace));
    });
  };
  return MakeKernel(ctx, run, workspace);
}

}  // namespace

void AppendReduceOps(std::vector<CudaOpEntry>& table) {
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
                         "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"})
    table.push_back({"", op, ReduceSupports, CreateReduce});
}

}  // namespace itkit::cuda
