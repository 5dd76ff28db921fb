// MatMul and Gemm through cublasGemmStridedBatchedEx. Row-major tensors are handed
// to column-major cuBLAS as their transposes (C^T = B^T A^T), so no copies are made.
// f32: FP32 compute, TF32 when allowed, FP16 tensor cores (f32 accumulate) in FP16
// mode; f16: f32 accumulation. Batch broadcasting: equal batch shapes, or one side
// without batch (stride 0); anything else runs on the CPU.
#include "cuda/strided.cuh"

namespace itkit::cuda {
namespace {

cublasComputeType_t ComputeType(const CudaContext& ctx, DType dtype) {
  if (dtype == DType::kF16) return CUBLAS_COMPUTE_32F;
  if (ctx.options.fp16) return CUBLAS_COMPUTE_32F_FAST_16F;
  return ctx.options.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

cudaDataType DataType(DType dtype) { return dtype == DType::kF16 ? CUDA_R_16F : CUDA_R_32F; }

struct GemmCall {
  cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;  // cuBLAS's A = our B, its B = our A
  int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  long long stride_a = 0, stride_b = 0, stride_c = 0;
  int batch = 1;
  float alpha = 1.0f, beta = 0.0f;
};

Status RunGemm(const CudaContext& ctx, const GemmCall& g, DType dtype, const void* ours_a, const void* ours_b,
               void* y) {
  const cudaDataType t = DataType(dtype);
  ITKIT_CUBLAS_CHECK(ctx.blas->GemmStridedBatchedEx(ctx.cublas, g.op_a, g.op_b, g.m, g.n, g.k, &g.alpha, ours_b, t, g.lda,
                                                g.stride_a, ours_a, t, g.ldb, g.stride_b, &g.beta, y, t, g.ldc,
                                                g.stride_c, g.batch, ComputeType(ctx, dtype), CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

bool FitsInt(int64_t v) { return v >= 0 && v < (int64_t{1} << 31); }

// ---- MatMul ----------------------------------------------------------------------------

Result<GemmCall> PlanMatMul(const NodeSignature& sig) {
  Shape a = sig.inputs[0].shape, b = sig.inputs[1].shape;
  if (a.empty() || b.empty()) return Unsupported("MatMul of a scalar");
  if (a.size() == 1) a.insert(a.begin(), 1);  // [K] -> [1, K]
  if (b.size() == 1) b.push_back(1);          // [K] -> [K, 1]
  const int64_t M = a[a.size() - 2], K = a.back(), N = b.back();
  if (b[b.size() - 2] != K) return InvalidArgument("MatMul inner dimensions differ");
  const Shape a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  const int64_t na = ElementCount(a_batch), nb = ElementCount(b_batch);
  GemmCall g;
  int64_t batch = 1;
  if (na == 1 || nb == 1) {
    batch = std::max(na, nb);
  } else {
    // Equal batch shapes after left-padding with ones.
    Shape pa = a_batch, pb = b_batch;
    while (pa.size() < pb.size()) pa.insert(pa.begin(), 1);
    while (pb.size() < pa.size()) pb.insert(pb.begin(), 1);
    if (pa != pb) return Unsupported("MatMul batch broadcast ", ShapeToString(a_batch), " x ", ShapeToString(b_batch));
    batch = na;
  }
  if (!FitsInt(M) || !FitsInt(N) || !FitsInt(K) || !FitsInt(batch)) return Unsupported("MatMul too large for cuBLAS");
  g.m = static_cast<int>(N);
  g.n = static_cast<int>(M);
  g.k = static_cast<int>(K);
  g.lda = static_cast<int>(N);
  g.ldb = static_cast<int>(K);
  g.ldc = static_cast<int>(N);
  g.stride_a = nb == 1 ? 0 : K * N;
  g.stride_b = na == 1 ? 0 : M * K;
  g.stride_c = M * N;
  g.batch = static_cast<int>(batch);
  if (ElementCount(sig.outputs[0].shape) != batch * M * N) return Internal("MatMul output size disagrees with the plan");
  return g;
}

bool MatMulSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.size() != 2) return Reject(reason, "needs 2 inputs");
  const DType dt = sig.inputs[0].dtype;
  if (!IsF32OrF16(dt) || sig.inputs[1].dtype != dt) return Reject(reason, "dtype ", DTypeName(dt));
  auto g = PlanMatMul(sig);
  if (!g.ok()) return Reject(reason, g.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateMatMul(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(GemmCall g, PlanMatMul(sig));
  const DType dtype = sig.inputs[0].dtype;
  const bool empty = ElementCount(sig.outputs[0].shape) == 0;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (empty) return Status::Ok();
    if (g.k == 0) {  // empty reduction: zeros
      ITKIT_CUDA_CHECK(cudaMemsetAsync(kc.outputs[0]->raw(), 0, kc.outputs[0]->bytes(), c->stream));
      return Status::Ok();
    }
    return RunGemm(*c, g, dtype, kc.inputs[0]->raw(), kc.inputs[1]->raw(), kc.outputs[0]->raw());
  });
}

// ---- Gemm ------------------------------------------------------------------------------

// y[i] = c[offset(i)]: C broadcast into Y before the product accumulates onto it.
template <typename T>
__global__ void BroadcastCopyKernel(const T* __restrict__ c, T* __restrict__ y, int64_t n, StridedArgs<1> args) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[1];
    DecodeOffsets(args, i, off);
    y[i] = c[off[0]];
  }
}

struct GemmPlan {
  GemmCall call;
  bool has_c = false;
  StridedArgs<1> c_args;
};

Result<GemmPlan> PlanGemm(const NodeSignature& sig) {
  const Shape& a = sig.inputs[0].shape;
  const Shape& b = sig.inputs[1].shape;
  if (a.size() != 2 || b.size() != 2) return InvalidArgument("Gemm needs 2-D A and B");
  const bool ta = sig.node->attrs.GetInt("transA", 0) != 0, tb = sig.node->attrs.GetInt("transB", 0) != 0;
  const int64_t M = ta ? a[1] : a[0], K = ta ? a[0] : a[1], N = tb ? b[0] : b[1];
  if ((tb ? b[1] : b[0]) != K) return InvalidArgument("Gemm inner dimensions differ");
  if (!FitsInt(M) || !FitsInt(N) || !FitsInt(K)) return Unsupported("Gemm too large for cuBLAS");
  if (K == 0) return Unsupported("Gemm with an empty reduction");
  GemmPlan p;
  GemmCall& g = p.call;
  g.m = static_cast<int>(N);
  g.n = static_cast<int>(M);
  g.k = static_cast<int>(K);
  g.op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS A = our B
  g.lda = static_cast<int>(tb ? K : N);
  g.op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS B = our A
  g.ldb = static_cast<int>(ta ? M : K);
  g.ldc = static_cast<int>(N);
  g.stride_c = M * N;
  g.alpha = sig.node->attrs.GetFloat("alpha", 1.0f);
  const float beta = sig.node->attrs.GetFloat("beta", 1.0f);
  p.has_c = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined && beta != 0.0f;
  g.beta = p.has_c ? beta : 0.0f;
  if (p.has_c) {
    const Shape out = {M, N};
    StridedPlan plan;
    plan.dims = out;
    plan.strides = {BroadcastStrides(sig.inputs[2].shape, out)};
    ITKIT_ASSIGN_OR_RETURN(p.c_args, ToArgs<1>(Collapse(std::move(plan))));
  }
  return p;
}

bool GemmSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.size() < 2) return Reject(reason, "needs A and B");
  const DType dt = sig.inputs[0].dtype;
  for (const ValueDesc& d : sig.inputs)
    if (d.dtype != DType::kUndefined && d.dtype != dt) return Reject(reason, "mixed dtypes");
  if (!IsF32OrF16(dt)) return Reject(reason, "dtype ", DTypeName(dt));
  auto p = PlanGemm(sig);
  if (!p.ok()) return Reject(reason, p.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateGemm(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(GemmPlan p, PlanGemm(sig));
  const DType dtype = sig.inputs[0].dtype;
  const int64_t n = static_cast<int64_t>(p.call.m) * p.call.n;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    if (p.has_c) {
      ITKIT_RETURN_IF_ERROR(DispatchFloat(dtype, [&]<typename T>() -> Status {
        BroadcastCopyKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(kc.inputs[2]->data<T>(),
                                                                           kc.outputs[0]->data<T>(), n, p.c_args);
        ITKIT_CUDA_CHECK_LAUNCH("BroadcastCopyKernel");
        return Status::Ok();
      }));
    }
    return RunGemm(*c, p.call, dtype, kc.inputs[0]->raw(), kc.inputs[1]->raw(), kc.outputs[0]->raw());
  });
}

}  // namespace

void AppendMatMulOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "MatMul", MatMulSupports, CreateMatMul});
  table.push_back({"", "Gemm", GemmSupports, CreateGemm});
}

}  // namespace itkit::cuda
