// Softmax / LogSoftmax on f32/f16 with f32 accumulation. The tensor is seen as
// [outer, len, inner] around the axis (opset >= 13), or [outer, len] with len the
// product of the axes from `axis` on (opset < 13's 2-D coercion). Channel softmax of
// a segmentation output (axis 1 of NCDHW: len = classes, inner = voxels) runs one
// thread per voxel with an online max/sum; row softmax (inner = 1) one block per row.
#include <cfloat>

#include "cuda/common.cuh"
#include "itkit/shape_inference.h"

namespace itkit::cuda {
namespace {

template <typename T, bool kLog>
__global__ void SoftmaxColumnsKernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t len,
                                     int64_t inner) {
  const int64_t columns = outer * inner;
  for (int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; col < columns;
       col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = col / inner, in = col % inner;
    const T* src = x + o * len * inner + in;
    T* dst = y + o * len * inner + in;
    float m = -FLT_MAX, s = 0.0f;
    for (int64_t k = 0; k < len; ++k) {  // online: one read for max and sum
      const float v = ToF(src[k * inner]);
      if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
      } else {
        s += expf(v - m);
      }
    }
    const float log_s = logf(s), inv_s = 1.0f / s;
    for (int64_t k = 0; k < len; ++k) {
      const float v = ToF(src[k * inner]) - m;
      dst[k * inner] = FromF<T>(kLog ? v - log_s : expf(v) * inv_s);
    }
  }
}

// Block-wide reduction (max or sum); every thread gets the result.
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float o = __shfl_down_sync(0xffffffffu, v, offset);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    const int warps = (blockDim.x + 31) >> 5;
    v = static_cast<int>(threadIdx.x) < warps ? scratch[threadIdx.x] : (kMax ? -FLT_MAX : 0.0f);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float o = __shfl_down_sync(0xffffffffu, v, offset);
      v = kMax ? fmaxf(v, o) : v + o;
    }
    if (threadIdx.x == 0) scratch[32] = v;
  }
  __syncthreads();
  const float result = scratch[32];
  __syncthreads();  // scratch is reused by the next reduction
  return result;
}

template <typename T, bool kLog>
__global__ void SoftmaxRowsKernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t len) {
  __shared__ float scratch[33];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* src = x + row * len;
    T* dst = y + row * len;
    float m = -FLT_MAX;
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) m = fmaxf(m, ToF(src[k]));
    m = BlockReduce<true>(m, scratch);
    float s = 0.0f;
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) s += expf(ToF(src[k]) - m);
    s = BlockReduce<false>(s, scratch);
    const float log_s = logf(s), inv_s = 1.0f / s;
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
      const float v = ToF(src[k]) - m;
      dst[k] = FromF<T>(kLog ? v - log_s : expf(v) * inv_s);
    }
  }
}

struct SoftmaxShape {
  int64_t outer = 1, len = 1, inner = 1;
};

Result<SoftmaxShape> GetShape(const NodeSignature& sig) {
  const Shape& x = sig.inputs[0].shape;
  const int rank = static_cast<int>(x.size());
  const int64_t def = sig.opset >= 13 ? -1 : 1;
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(sig.node->attrs.GetInt("axis", def), rank, *sig.node));
  SoftmaxShape s;
  for (int d = 0; d < rank; ++d) {
    if (d < axis) s.outer *= x[d];
    else if (d == axis || sig.opset < 13) s.len *= x[d];
    else s.inner *= x[d];
  }
  return s;
}

bool SoftmaxSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (sig.inputs[0].shape.empty()) return Reject(reason, "scalar");
  auto s = GetShape(sig);
  if (!s.ok()) return Reject(reason, s.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateSoftmax(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(SoftmaxShape s, GetShape(sig));
  const bool log = sig.node->op_type == "LogSoftmax";
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (s.outer * s.len * s.inner == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      const T* x = kc.inputs[0]->data<T>();
      T* y = kc.outputs[0]->data<T>();
      if (s.inner == 1) {
        const unsigned grid = static_cast<unsigned>(std::min<int64_t>(s.outer, 65535));
        if (log) SoftmaxRowsKernel<T, true><<<grid, kThreads, 0, c->stream>>>(x, y, s.outer, s.len);
        else SoftmaxRowsKernel<T, false><<<grid, kThreads, 0, c->stream>>>(x, y, s.outer, s.len);
      } else {
        const unsigned grid = GridFor(s.outer * s.inner, *c);
        if (log) SoftmaxColumnsKernel<T, true><<<grid, kThreads, 0, c->stream>>>(x, y, s.outer, s.len, s.inner);
        else SoftmaxColumnsKernel<T, false><<<grid, kThreads, 0, c->stream>>>(x, y, s.outer, s.len, s.inner);
      }
      ITKIT_CUDA_CHECK_LAUNCH("SoftmaxKernel");
      return Status::Ok();
    });
  });
}

}  // namespace

void AppendSoftmaxOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "Softmax", SoftmaxSupports, CreateSoftmax});
  table.push_back({"", "LogSoftmax", SoftmaxSupports, CreateSoftmax});
}

}  // namespace itkit::cuda
