// MaxPool / AveragePool over 1-3 spatial axes (pads, strides, dilations, ceil_mode,
// count_include_pad as kernel_math.h's PoolTapsFor counts them), and the global
// pools. f32/f16, f32 accumulation. MaxPool's Indices output stays on the CPU.
#include <cfloat>

#include "cuda/common.cuh"
#include "shape_infer/window_geometry.h"

namespace itkit::cuda {
namespace {

constexpr int kMaxSpatial = 3;

struct PoolParams {
  int spatial = 0;
  bool max = false, count_include_pad = false;
  int64_t in[kMaxSpatial] = {1, 1, 1}, out[kMaxSpatial] = {1, 1, 1};
  int64_t k[kMaxSpatial] = {1, 1, 1}, stride[kMaxSpatial] = {1, 1, 1}, dil[kMaxSpatial] = {1, 1, 1};
  int64_t pad_begin[kMaxSpatial] = {}, pad_end[kMaxSpatial] = {};
};

// One thread per output element; spatial axes padded to 3 with unit extents.
template <typename T>
__global__ void PoolKernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, PoolParams p) {
  const int64_t out_plane = p.out[0] * p.out[1] * p.out[2], in_plane = p.in[0] * p.in[1] * p.in[2];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / out_plane;
    int64_t rem = i % out_plane;
    const int64_t o2 = rem % p.out[2];
    rem /= p.out[2];
    const int64_t o1 = rem % p.out[1], o0 = rem / p.out[1];
    const T* src = x + row * in_plane;
    const int64_t f0 = o0 * p.stride[0] - p.pad_begin[0], f1 = o1 * p.stride[1] - p.pad_begin[1],
                  f2 = o2 * p.stride[2] - p.pad_begin[2];
    float acc = p.max ? -INFINITY : 0.0f;
    bool any = false;
    for (int64_t t0 = 0; t0 < p.k[0]; ++t0) {
      const int64_t i0 = f0 + t0 * p.dil[0];
      if (i0 < 0 || i0 >= p.in[0]) continue;
      for (int64_t t1 = 0; t1 < p.k[1]; ++t1) {
        const int64_t i1 = f1 + t1 * p.dil[1];
        if (i1 < 0 || i1 >= p.in[1]) continue;
        for (int64_t t2 = 0; t2 < p.k[2]; ++t2) {
          const int64_t i2 = f2 + t2 * p.dil[2];
          if (i2 < 0 || i2 >= p.in[2]) continue;
          const float v = ToF(src[(i0 * p.in[1] + i1) * p.in[2] + i2]);
          acc = p.max ? MaxKeepingNaN(acc, v) : acc + v;
          any = true;
        }
      }
    }
    if (!p.max) {
      int64_t divisor = 1;
      const int64_t o[3] = {o0, o1, o2};
      for (int a = 0; a < 3; ++a) {
        const PoolTaps c = PoolTapsFor(o[a], p.in[a], p.k[a], p.stride[a], p.dil[a], p.pad_begin[a], p.pad_end[a]);
        divisor *= p.count_include_pad ? c.padded : c.valid;
      }
      acc = divisor > 0 ? acc / static_cast<float>(divisor) : 0.0f;
    } else if (!any) {
      acc = -FLT_MAX;  // a window entirely in the padding
    }
    y[i] = FromF<T>(acc);
  }
}

Result<PoolParams> GetParams(const NodeSignature& sig) {
  const Shape& x = sig.inputs[0].shape;
  const int spatial = static_cast<int>(x.size()) - 2;
  if (spatial < 1 || spatial > kMaxSpatial) return Unsupported("pooling over ", spatial, " axes");
  ITKIT_ASSIGN_OR_RETURN(shape_rules::WindowGeometry g,
                         shape_rules::ComputeWindowGeometry(*sig.node, shape_rules::WindowOp::kPool, x, {}));
  PoolParams p;
  p.spatial = spatial;
  p.max = sig.node->op_type == "MaxPool";
  p.count_include_pad = sig.node->attrs.GetInt("count_include_pad", 0) != 0;
  // Axes right-aligned into 3: a 2-D pool gets a leading unit axis.
  const int shift = kMaxSpatial - spatial;
  for (int a = 0; a < spatial; ++a) {
    p.in[shift + a] = g.in[a];
    p.out[shift + a] = g.out[a];
    p.k[shift + a] = g.kernel[a];
    p.stride[shift + a] = g.strides[a];
    p.dil[shift + a] = g.dilations[a];
    p.pad_begin[shift + a] = g.pad_begin[a];
    p.pad_end[shift + a] = g.pad_end[a];
  }
  for (int a = 0; a < spatial; ++a)
    if (sig.outputs[0].shape[2 + a] != g.out[a]) return Internal("pool output extent disagrees with the plan");
  return p;
}

bool PoolSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (sig.node->outputs.size() > 1 && !sig.node->outputs[1].empty()) return Reject(reason, "MaxPool Indices output");
  auto p = GetParams(sig);
  if (!p.ok()) return Reject(reason, p.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreatePool(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(PoolParams p, GetParams(sig));
  const int64_t n = ElementCount(sig.outputs[0].shape);
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      PoolKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(kc.inputs[0]->data<T>(), kc.outputs[0]->data<T>(), n,
                                                                p);
      ITKIT_CUDA_CHECK_LAUNCH("PoolKernel");
      return Status::Ok();
    });
  });
}

// ---- global pools: one block per (n, c) row ------------------------------------------

template <typename T, bool kMax>
__global__ void GlobalPoolKernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t S) {
  __shared__ float partial[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* src = x + row * S;
    float acc = kMax ? -INFINITY : 0.0f;
    for (int64_t s = threadIdx.x; s < S; s += blockDim.x) acc = kMax ? MaxKeepingNaN(acc, ToF(src[s])) : acc + ToF(src[s]);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_down_sync(0xffffffffu, acc, offset);
      acc = kMax ? MaxKeepingNaN(acc, other) : acc + other;
    }
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
      const int warps = (blockDim.x + 31) >> 5;
      acc = static_cast<int>(threadIdx.x) < warps ? partial[threadIdx.x] : (kMax ? -INFINITY : 0.0f);
      for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_down_sync(0xffffffffu, acc, offset);
        acc = kMax ? MaxKeepingNaN(acc, other) : acc + other;
      }
      if (threadIdx.x == 0) y[row] = FromF<T>(kMax ? acc : acc / static_cast<float>(S));
    }
    __syncthreads();
  }
}

bool GlobalPoolSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  if (sig.inputs[0].shape.size() < 3) return Reject(reason, "rank < 3");
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateGlobalPool(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& x = sig.inputs[0].shape;
  const int64_t rows = x[0] * x[1];
  int64_t S = 1;
  for (size_t i = 2; i < x.size(); ++i) S *= x[i];
  const bool is_max = sig.node->op_type == "GlobalMaxPool";
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (rows == 0 || S == 0) return Status::Ok();
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      if (is_max) {
        GlobalPoolKernel<T, true><<<grid, kThreads, 0, c->stream>>>(kc.inputs[0]->data<T>(), kc.outputs[0]->data<T>(),
                                                                    rows, S);
      } else {
        GlobalPoolKernel<T, false><<<grid, kThreads, 0, c->stream>>>(kc.inputs[0]->data<T>(),
                                                                     kc.outputs[0]->data<T>(), rows, S);
      }
      ITKIT_CUDA_CHECK_LAUNCH("GlobalPoolKernel");
      return Status::Ok();
    });
  });
}

}  // namespace

void AppendPoolOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "MaxPool", PoolSupports, CreatePool});
  table.push_back({"", "AveragePool", PoolSupports, CreatePool});
  table.push_back({"", "GlobalAveragePool", GlobalPoolSupports, CreateGlobalPool});
  table.push_back({"", "GlobalMaxPool", GlobalPoolSupports, CreateGlobalPool});
}

}  // namespace itkit::cuda
