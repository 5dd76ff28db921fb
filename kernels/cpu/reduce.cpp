// CPU kernels of the reduction family, part 1: Reduce* and ArgMax/ArgMin. Softmax,
// LogSoftmax and Hardmax are in reduce_softmax.cpp.
//
// A reduction is pre-map, combine, post-map (e.g. L2 = sqrt(sum(x^2))). f32 inputs
// accumulate in double so sums over whole volumes (1e8 elements) stay within 1e-6 of
// the exact result; integers accumulate in int64. The reduced axes are coalesced:
// one reduced block gives the [outer, R, inner] fast paths (contiguous rows, or rows
// of accumulators over the contiguous inner axis), anything else a general walk.
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "cpu/cpu_ops.h"
#include "cpu/f16_adapter.h"
#include "cpu/nd_iter.h"
#include "shape_infer/reduce_axes.h"

namespace itkit::cpu {

void AppendSoftmaxKernels(std::vector<CpuOpEntry>& table);  // reduce_softmax.cpp

namespace {

enum class Red { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

template <Red K, typename T>
struct ReduceOp {
  static constexpr bool kNeedsDouble = K == Red::kL2 || K == Red::kLogSum || K == Red::kLogSumExp;
  using Acc = std::conditional_t<std::is_floating_point_v<T> || kNeedsDouble, double, int64_t>;

  static Acc Init() {
    if constexpr (K == Red::kProd) return 1;
    else if constexpr (K == Red::kMax) {
      if constexpr (std::is_floating_point_v<Acc>) return -std::numeric_limits<double>::infinity();
      else return std::numeric_limits<T>::lowest();
    } else if constexpr (K == Red::kMin) {
      if constexpr (std::is_floating_point_v<Acc>) return std::numeric_limits<double>::infinity();
      else return std::numeric_limits<T>::max();
    } else return 0;
  }
  static Acc Pre(T x) {
    const Acc v = static_cast<Acc>(x);
    if constexpr (K == Red::kL1) return v < 0 ? Acc(0) - v : v;
    else if constexpr (K == Red::kL2 || K == Red::kSumSquare) return Mul(v, v);
    else if constexpr (K == Red::kLogSumExp) return std::exp(v);
    else return v;
  }
  static Acc Mul(Acc a, Acc b) {
    if constexpr (std::is_integral_v<Acc>)  // wraps instead of signed-overflow UB
      return static_cast<Acc>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    else return a * b;
  }
  static bool IsNaN(Acc v) {
    if constexpr (std::is_floating_point_v<Acc>) return v != v;
    else return false;
  }
  static Acc Combine(Acc acc, Acc v) {
    // Max/Min propagate NaN like numpy and torch.amax.
    if constexpr (K == Red::kMax) return (v > acc || IsNaN(v)) ? v : acc;
    else if constexpr (K == Red::kMin) return (v < acc || IsNaN(v)) ? v : acc;
    else if constexpr (K == Red::kProd) return Mul(acc, v);
    else if constexpr (std::is_integral_v<Acc>)
      return static_cast<Acc>(static_cast<uint64_t>(acc) + static_cast<uint64_t>(v));
    else return acc + v;
  }
  static T Post(Acc acc, int64_t count) {
    if constexpr (K == Red::kMean) {
      if constexpr (std::is_integral_v<Acc>) return static_cast<T>(count ? acc / count : 0);
      else return static_cast<T>(acc / static_cast<double>(count));
    } else if constexpr (K == Red::kL2) {
      return static_cast<T>(std::sqrt(acc));
    } else if constexpr (K == Red::kLogSum || K == Red::kLogSumExp) {
      return static_cast<T>(std::log(acc));
    } else {
      return static_cast<T>(acc);
    }
  }
};

// The input as [outer, R, inner] when the reduced axes form one block after dropping
// size-1 dims, else the kept and reduced dims with their input strides.
struct ReducePlan {
  bool simple = true;
  int64_t outer = 1, r = 1, inner = 1;
  int64_t count = 1;  // elements combined into each output
  std::vector<int64_t> kept_dims, kept_strides, red_dims, red_strides;
};

ReducePlan MakeReducePlan(const Shape& in, const std::vector<bool>& reduced) {
  ReducePlan p;
  const std::vector<int64_t> strides = ContiguousStrides(in);
  int groups = 0;
  bool prev_reduced = false, any = false;
  for (size_t d = 0; d < in.size(); ++d) {
    if (reduced[d]) p.count *= in[d];
    if (in[d] == 1) continue;
    (reduced[d] ? p.red_dims : p.kept_dims).push_back(in[d]);
    (reduced[d] ? p.red_strides : p.kept_strides).push_back(strides[d]);
    if (reduced[d] && (!any || !prev_reduced)) ++groups;
    if (!reduced[d]) (groups == 0 ? p.outer : p.inner) *= in[d];
    else p.r *= in[d];
    prev_reduced = reduced[d];
    any = true;
  }
  p.simple = groups <= 1;
  if (groups == 0) p.inner = 1, p.outer = ElementCount(in), p.r = 1;
  return p;
}

// Accumulators per task over the inner axis; on the stack.
constexpr int64_t kInnerBlock = 256;

// Items per parallel range when each item costs `work` element visits.
int64_t GrainFor(int64_t work) { return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, work)); }

// Combines row[r0..r1) in 8 interleaved lanes: independent accumulators break the
// serial dependency (one add latency per element) and let the loop vectorise, while
// the fixed lane order keeps results deterministic.
template <Red K, typename T>
typename ReduceOp<K, T>::Acc ReduceRow(const T* row, int64_t r0, int64_t r1) {
  using Op = ReduceOp<K, T>;
  using Acc = typename Op::Acc;
  constexpr int kLanes = 8;
  Acc lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = Op::Init();
  int64_t i = r0;
  for (; i + kLanes <= r1; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] = Op::Combine(lane[l], Op::Pre(row[i + l]));
  for (int l = 0; i < r1; ++i, ++l) lane[l] = Op::Combine(lane[l], Op::Pre(row[i]));
  Acc acc = lane[0];
  for (int l = 1; l < kLanes; ++l) acc = Op::Combine(acc, lane[l]);
  return acc;
}

template <Red K, typename T>
void ReduceSimple(const ReducePlan& p, const T* in, T* out, ThreadPool* pool) {
  using Op = ReduceOp<K, T>;
  using Acc = typename Op::Acc;
  const int64_t outer = p.outer, r = p.r, inner = p.inner, count = p.count;
  if (inner == 1) {
    // Few long rows (e.g. a whole-volume sum): split each row into fixed chunks whose
    // partial results are combined in order, so the result does not depend on the
    // thread count.
    constexpr int64_t kChunk = 1 << 16;
    const int64_t chunks = (outer < 16 && r >= 4 * kChunk) ? (r + kChunk - 1) / kChunk : 1;
    std::vector<Acc> partial(static_cast<size_t>(outer * chunks));
    ParallelFor(pool, outer * chunks, GrainFor(std::min(r, kChunk)),
                [&](int64_t b, int64_t e) {
                  for (int64_t t = b; t < e; ++t) {
                    const int64_t o = t / chunks, c = t % chunks;
                    const int64_t r0 = chunks == 1 ? 0 : c * kChunk, r1 = chunks == 1 ? r : std::min(r, r0 + kChunk);
                    partial[static_cast<size_t>(t)] = ReduceRow<K, T>(in + o * r, r0, r1);
                  }
                });
    for (int64_t o = 0; o < outer; ++o) {
      Acc acc = partial[static_cast<size_t>(o * chunks)];
      for (int64_t c = 1; c < chunks; ++c) acc = Op::Combine(acc, partial[static_cast<size_t>(o * chunks + c)]);
      out[o] = Op::Post(acc, count);
    }
    return;
  }
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
  ParallelFor(pool, outer * blocks, GrainFor(r * std::min(inner, kInnerBlock)),
              [&](int64_t b, int64_t e) {
                Acc acc[kInnerBlock];
                for (int64_t t = b; t < e; ++t) {
                  const int64_t o = t / blocks, j0 = (t % blocks) * kInnerBlock;
                  const int64_t n = std::min(kInnerBlock, inner - j0);
                  for (int64_t j = 0; j < n; ++j) acc[j] = Op::Init();
                  const T* base = in + o * r * inner + j0;
                  for (int64_t i = 0; i < r; ++i) {
                    const T* row = base + i * inner;
                    for (int64_t j = 0; j < n; ++j) acc[j] = Op::Combine(acc[j], Op::Pre(row[j]));
                  }
                  T* dst = out + o * inner + j0;
                  for (int64_t j = 0; j < n; ++j) dst[j] = Op::Post(acc[j], count);
                }
              });
}

// Any set of axes: per output element, walk the reduced sub-box.
template <Red K, typename T>
void ReduceGeneral(const ReducePlan& p, const T* in, T* out, int64_t out_count, ThreadPool* pool) {
  using Op = ReduceOp<K, T>;
  using Acc = typename Op::Acc;
  const size_t nk = p.kept_dims.size(), nr = p.red_dims.size();
  ParallelFor(pool, out_count, GrainFor(p.count), [&](int64_t b, int64_t e) {
    std::vector<int64_t> ridx(nr);
    for (int64_t o = b; o < e; ++o) {
      int64_t base = 0, rem = o;
      for (size_t d = nk; d-- > 0;) {
        base += (rem % p.kept_dims[d]) * p.kept_strides[d];
        rem /= p.kept_dims[d];
      }
      Acc acc = Op::Init();
      std::fill(ridx.begin(), ridx.end(), 0);
      int64_t off = base;
      for (int64_t i = 0; i < p.count; ++i) {
        acc = Op::Combine(acc, Op::Pre(in[off]));
        for (size_t d = nr; d-- > 0;) {
          off += p.red_strides[d];
          if (++ridx[d] < p.red_dims[d]) break;
          off -= p.red_dims[d] * p.red_strides[d];
          ridx[d] = 0;
        }
      }
      out[o] = Op::Post(acc, p.count);
    }
  });
}

// The reduced axes (attribute, or input 1: ReduceSum from opset 13, all from 18).
Result<ReducePlan> PlanFor(const Node& node, const Shape& in, const std::vector<int64_t>& axes, bool noop) {
  ITKIT_ASSIGN_OR_RETURN(std::vector<bool> reduced,
                         shape_rules::ReducedAxesMask(static_cast<int>(in.size()), axes, noop, node));
  return MakeReducePlan(in, reduced);
}

template <Red K, typename T>
Status RunReduce(const ReducePlan& p, KernelContext& ctx) {
  const T* in = ctx.inputs[0]->data<T>();
  T* out = ctx.outputs[0]->data<T>();
  if (p.simple) ReduceSimple<K, T>(p, in, out, ctx.pool);
  else ReduceGeneral<K, T>(p, in, out, ctx.outputs[0]->size(), ctx.pool);
  return Status::Ok();
}

// Plans at creation when the axes are known then (attribute or constant input),
// else from the axes input at run time.
template <Red K, typename T>
std::unique_ptr<OpKernel> MakeReduceKernel(const NodeSignature& sig, std::optional<ReducePlan> plan, bool noop) {
  const Node node = *sig.node;  // a copy: the kernel may outlive the signature
  const Shape in = sig.inputs[0].shape;
  return MakeKernel([=](KernelContext& ctx) -> Status {
    if (plan) return RunReduce<K, T>(*plan, ctx);
    std::vector<int64_t> axes;
    if (ctx.inputs.size() > 1 && ctx.inputs[1]) axes = ctx.inputs[1]->ToInt64Vector();
    ITKIT_ASSIGN_OR_RETURN(ReducePlan p, PlanFor(node, in, axes, noop));
    return RunReduce<K, T>(p, ctx);
  });
}

template <Red K>
Result<std::unique_ptr<OpKernel>> CreateReduce(const NodeSignature& sig) {
  const Node& node = *sig.node;
  const bool noop = node.attrs.GetInt("noop_with_empty_axes", 0) != 0;
  const bool axes_input = !node.attrs.Has("axes") && sig.inputs.size() > 1 && sig.inputs[1].dtype != DType::kUndefined;
  std::optional<ReducePlan> plan;
  if (!axes_input || sig.inputs[1].constant) {
    const std::vector<int64_t> axes =
        axes_input ? sig.inputs[1].constant->ToInt64Vector() : node.attrs.GetInts("axes");
    ITKIT_ASSIGN_OR_RETURN(ReducePlan p, PlanFor(node, sig.inputs[0].shape, axes, noop));
    plan = p;
  }
  switch (sig.inputs[0].dtype) {
    case DType::kF32: return MakeReduceKernel<K, float>(sig, plan, noop);
    case DType::kI64: return MakeReduceKernel<K, int64_t>(sig, plan, noop);
    case DType::kI32: return MakeReduceKernel<K, int32_t>(sig, plan, noop);
    case DType::kU8: return MakeReduceKernel<K, uint8_t>(sig, plan, noop);
    default:
      return Unsupported(node.Describe(), ": dtype ", DTypeName(sig.inputs[0].dtype),
                         " is not supported by the CPU kernel");
  }
}

// ---- ArgMax / ArgMin ------------------------------------------------------

// Whether v replaces the current best: strictly better, or equal when the last index
// is wanted. A NaN beats any number (numpy and torch return the first NaN). Bitwise
// operators keep it branch-free so the block loop below vectorises.
template <bool kMax, bool kLast, typename T>
inline bool Replaces(T v, T best) {
  bool r = kMax ? (kLast ? v >= best : v > best) : (kLast ? v <= best : v < best);
  if constexpr (std::is_floating_point_v<T>) r = r | ((v != v) & (kLast | (best == best)));
  return r;
}

// I: the index type inside a block (int32 vectorises with float data).
template <bool kMax, bool kLast, typename T, typename I>
Status RunArg(int64_t outer, int64_t n, int64_t inner, KernelContext& ctx) {
  const T* in = ctx.inputs[0]->data<T>();
  int64_t* out = ctx.outputs[0]->data<int64_t>();
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
  ParallelFor(ctx.pool, outer * blocks, GrainFor(n * std::min(inner, kInnerBlock)), [&](int64_t b, int64_t e) {
    T best[kInnerBlock];
    I arg[kInnerBlock];
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / blocks, j0 = (t % blocks) * kInnerBlock;
      const int64_t m = std::min(kInnerBlock, inner - j0);
      const T* base = in + o * n * inner + j0;
      for (int64_t j = 0; j < m; ++j) {
        best[j] = base[j];
        arg[j] = 0;
      }
      for (int64_t i = 1; i < n; ++i) {
        const T* row = base + i * inner;
        const I idx = static_cast<I>(i);
        for (int64_t j = 0; j < m; ++j) {
          const T v = row[j], cur = best[j];
          const I a = arg[j];
          const bool take = Replaces<kMax, kLast>(v, cur);
          best[j] = take ? v : cur;
          arg[j] = take ? idx : a;
        }
      }
      int64_t* dst = out + o * inner + j0;
      for (int64_t j = 0; j < m; ++j) dst[j] = arg[j];
    }
  });
  return Status::Ok();
}

template <bool kMax, typename T>
std::unique_ptr<OpKernel> MakeArgKernel(int64_t outer, int64_t n, int64_t inner, bool last) {
  const bool narrow = n <= std::numeric_limits<int32_t>::max();
  auto run = [=](KernelContext& ctx) {
    if (last) {
      return narrow ? RunArg<kMax, true, T, int32_t>(outer, n, inner, ctx) : RunArg<kMax, true, T, int64_t>(outer, n, inner, ctx);
    }
    return narrow ? RunArg<kMax, false, T, int32_t>(outer, n, inner, ctx) : RunArg<kMax, false, T, int64_t>(outer, n, inner, ctx);
  };
  return MakeKernel(run);
}

template <bool kMax>
Result<std::unique_ptr<OpKernel>> CreateArg(const NodeSignature& sig) {
  const Shape& in = sig.inputs[0].shape;
  int64_t axis = sig.node->attrs.GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(in.size());
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < in.size(); ++d) {
    if (static_cast<int64_t>(d) < axis) outer *= in[d];
    if (static_cast<int64_t>(d) > axis) inner *= in[d];
  }
  const int64_t n = in[static_cast<size_t>(axis)];
  const bool last = sig.node->attrs.GetInt("select_last_index", 0) != 0;
  switch (sig.inputs[0].dtype) {
    case DType::kF32: return MakeArgKernel<kMax, float>(outer, n, inner, last);
    case DType::kI64: return MakeArgKernel<kMax, int64_t>(outer, n, inner, last);
    case DType::kI32: return MakeArgKernel<kMax, int32_t>(outer, n, inner, last);
    case DType::kU8: return MakeArgKernel<kMax, uint8_t>(outer, n, inner, last);
    default:
      return Unsupported(sig.node->Describe(), ": dtype ", DTypeName(sig.inputs[0].dtype),
                         " is not supported by the CPU kernel");
  }
}

}  // namespace

void AppendReduceKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "ReduceSum", &WithF16<&CreateReduce<Red::kSum>>});
  table.push_back({"", "ReduceMean", &WithF16<&CreateReduce<Red::kMean>>});
  table.push_back({"", "ReduceMax", &WithF16<&CreateReduce<Red::kMax>>});
  table.push_back({"", "ReduceMin", &WithF16<&CreateReduce<Red::kMin>>});
  table.push_back({"", "ReduceProd", &WithF16<&CreateReduce<Red::kProd>>});
  table.push_back({"", "ReduceL1", &WithF16<&CreateReduce<Red::kL1>>});
  table.push_back({"", "ReduceL2", &WithF16<&CreateReduce<Red::kL2>>});
  table.push_back({"", "ReduceSumSquare", &WithF16<&CreateReduce<Red::kSumSquare>>});
  table.push_back({"", "ReduceLogSum", &WithF16<&CreateReduce<Red::kLogSum>>});
  table.push_back({"", "ReduceLogSumExp", &WithF16<&CreateReduce<Red::kLogSumExp>>});
  table.push_back({"", "ArgMax", &WithF16<&CreateArg<true>>});
  table.push_back({"", "ArgMin", &WithF16<&CreateArg<false>>});
  AppendSoftmaxKernels(table);
}

}  // namespace itkit::cpu
