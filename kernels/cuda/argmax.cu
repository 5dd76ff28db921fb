// ArgMax / ArgMin (f32/f16 in, int64 out) and the shared arg-reduce launcher. One
// thread per output position walks the reduced axis: for class maps (len = a few
// classes, inner = voxels) reads are coalesced across threads.
#include "cuda/argmax.cuh"
#include "itkit/shape_inference.h"

namespace itkit::cuda {
namespace {

template <typename T, typename Out>
__global__ void ArgReduceKernel(const T* __restrict__ x, Out* __restrict__ out, int64_t outer, int64_t len,
                                int64_t inner, bool is_min, bool select_last) {
  const int64_t positions = outer * inner;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < positions;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = p / inner, i = p % inner;
    const T* src = x + o * len * inner + i;
    float best = ToF(src[0]);
    int64_t best_k = 0;
    for (int64_t k = 1; k < len; ++k) {
      const float v = ToF(src[k * inner]);
      const bool better = is_min ? (select_last ? v <= best : v < best) : (select_last ? v >= best : v > best);
      if (better) {
        best = v;
        best_k = k;
      }
    }
    out[p] = static_cast<Out>(best_k);
  }
}

template <typename T>
Status LaunchTyped(const CudaContext& ctx, const T* x, void* out, DType out_dtype, int64_t outer, int64_t len,
                   int64_t inner, bool is_min, bool select_last) {
  const unsigned grid = GridFor(outer * inner, ctx);
  switch (out_dtype) {
    case DType::kU8:
      ArgReduceKernel<T, uint8_t><<<grid, kThreads, 0, ctx.stream>>>(x, static_cast<uint8_t*>(out), outer, len, inner,
                                                                     is_min, select_last);
      break;
    case DType::kI32:
      ArgReduceKernel<T, int32_t><<<grid, kThreads, 0, ctx.stream>>>(x, static_cast<int32_t*>(out), outer, len, inner,
                                                                     is_min, select_last);
      break;
    case DType::kI64:
      ArgReduceKernel<T, int64_t><<<grid, kThreads, 0, ctx.stream>>>(x, static_cast<int64_t*>(out), outer, len, inner,
                                                                     is_min, select_last);
      break;
    default: return Internal("arg-reduce output dtype ", DTypeName(out_dtype));
  }
  ITKIT_CUDA_CHECK_LAUNCH("ArgReduceKernel");
  return Status::Ok();
}

struct ArgShape {
  int64_t outer = 1, len = 1, inner = 1;
};

Result<ArgShape> GetShape(const NodeSignature& sig) {
  const Shape& x = sig.inputs[0].shape;
  const int rank = static_cast<int>(x.size());
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(sig.node->attrs.GetInt("axis", 0), rank, *sig.node));
  ArgShape s;
  for (int d = 0; d < rank; ++d) {
    if (d < axis) s.outer *= x[d];
    else if (d == axis) s.len = x[d];
    else s.inner *= x[d];
  }
  if (s.len == 0) return InvalidArgument("arg-reduce over an empty axis");
  return s;
}

bool ArgSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (sig.outputs[0].dtype != DType::kI64) return Reject(reason, "output dtype");
  if (sig.inputs[0].shape.empty()) return Reject(reason, "scalar");
  auto s = GetShape(sig);
  if (!s.ok()) return Reject(reason, s.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateArg(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(ArgShape s, GetShape(sig));
  const bool is_min = sig.node->op_type == "ArgMin";
  const bool last = sig.node->attrs.GetInt("select_last_index", 0) != 0;
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (s.outer * s.inner == 0) return Status::Ok();
    return LaunchArgReduce(*c, kc.inputs[0]->raw(), dtype, kc.outputs[0]->raw(), DType::kI64, s.outer, s.len,
                           s.inner, is_min, last);
  });
}

}  // namespace

Status LaunchArgReduce(const CudaContext& ctx, const void* x, DType x_dtype, void* out, DType out_dtype,
                       int64_t outer, int64_t len, int64_t inner, bool is_min, bool select_last) {
  if (outer * inner == 0) return Status::Ok();
  if (len <= 0) return InvalidArgument("arg-reduce over an empty axis");
  return DispatchFloat(x_dtype, [&]<typename T>() {
    return LaunchTyped<T>(ctx, static_cast<const T*>(x), out, out_dtype, outer, len, inner, is_min, select_last);
  });
}

void AppendArgMaxOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "ArgMax", ArgSupports, CreateArg});
  table.push_back({"", "ArgMin", ArgSupports, CreateArg});
}

}  // namespace itkit::cuda
