// CPU kernels of the matmul family: MatMul and Gemm through oneDNN's sgemm.
// Large products (convolution-free networks' linear layers) run one sgemm at a time
// with oneDNN's OpenMP threads; many small ones (attention's [B, heads, tokens, d]
// batches) are spread over the session's pool with single-threaded sgemm calls, as
// threading inside a small product costs more than it gains.
#include <oneapi/dnnl/dnnl.h>

#include <atomic>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/matmul_kernels.h"
#include "cpu/onednn_util.h"

namespace itkit::cpu {
namespace {

struct GemmPlan {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  float alpha = 1.0f, beta = 0.0f;
  int64_t lda = 0, ldb = 0;
  std::vector<int64_t> a_offset, b_offset;  // per output matrix, in elements
  bool has_c = false;
  Shape c_shape;  // Gemm's C, broadcast to [m, n]
};

// Offsets of each output batch's A and B matrices under numpy broadcasting.
void BatchOffsets(const Shape& a_batch, const Shape& b_batch, const Shape& out_batch, int64_t a_mat, int64_t b_mat,
                  std::vector<int64_t>* a_off, std::vector<int64_t>* b_off) {
  const int64_t count = ElementCount(out_batch);
  const size_t rank = out_batch.size();
  auto strides_for = [&](const Shape& s, int64_t mat) {
    std::vector<int64_t> st(rank, 0);
    int64_t stride = mat;
    for (size_t i = 0; i < s.size(); ++i) {
      const size_t axis = s.size() - 1 - i, out_axis = rank - 1 - i;
      st[out_axis] = s[axis] == 1 ? 0 : stride;
      stride *= s[axis];
    }
    return st;
  };
  const std::vector<int64_t> as = strides_for(a_batch, a_mat), bs = strides_for(b_batch, b_mat);
  a_off->resize(static_cast<size_t>(count));
  b_off->resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    int64_t rem = i, ao = 0, bo = 0;
    for (size_t axis = rank; axis-- > 0;) {
      const int64_t c = rem % out_batch[axis];
      rem /= out_batch[axis];
      ao += c * as[axis];
      bo += c * bs[axis];
    }
    (*a_off)[static_cast<size_t>(i)] = ao;
    (*b_off)[static_cast<size_t>(i)] = bo;
  }
}

Result<GemmPlan> PlanMatMul(const NodeSignature& sig) {
  Shape a = sig.inputs[0].shape, b = sig.inputs[1].shape;
  if (a.empty() || b.empty()) return InvalidArgument(sig.node->Describe(), ": scalar operand");
  if (a.size() == 1) a.insert(a.begin(), 1);  // [K] -> [1, K]
  if (b.size() == 1) b.push_back(1);          // [K] -> [K, 1]
  GemmPlan p;
  p.m = a[a.size() - 2];
  p.k = a.back();
  p.n = b.back();
  p.lda = p.k;
  p.ldb = p.n;
  const Shape a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  ITKIT_ASSIGN_OR_RETURN(Shape out_batch, BroadcastShapes(a_batch, b_batch));
  if (ElementCount(b_batch) == 1) {
    // One B for every A matrix (a linear layer over [batch..., tokens, K]): the
    // stacked A matrices are one tall contiguous matrix, so one large GEMM.
    p.m *= ElementCount(out_batch);
    p.a_offset = {0};
    p.b_offset = {0};
    return p;
  }
  BatchOffsets(a_batch, b_batch, out_batch, p.m * p.k, p.k * p.n, &p.a_offset, &p.b_offset);
  return p;
}

Result<GemmPlan> PlanGemm(const NodeSignature& sig) {
  const Node& node = *sig.node;
  const Shape& a = sig.inputs[0].shape;
  const Shape& b = sig.inputs[1].shape;
  GemmPlan p;
  p.trans_a = node.attrs.GetInt("transA", 0) != 0;
  p.trans_b = node.attrs.GetInt("transB", 0) != 0;
  p.alpha = node.attrs.GetFloat("alpha", 1.0f);
  p.beta = node.attrs.GetFloat("beta", 1.0f);
  p.m = p.trans_a ? a[1] : a[0];
  p.k = p.trans_a ? a[0] : a[1];
  p.n = p.trans_b ? b[0] : b[1];
  p.lda = a[1];
  p.ldb = b[1];
  p.a_offset = {0};
  p.b_offset = {0};
  p.has_c = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined && p.beta != 0.0f;
  if (p.has_c) p.c_shape = sig.inputs[2].shape;
  if (!p.has_c) p.beta = 0.0f;
  return p;
}

// Writes C broadcast to [m, n] into y.
void BroadcastC(const Tensor& c, const Shape& c_shape, int64_t m, int64_t n, float* y) {
  const float* cv = c.data<float>();
  // Right-aligned against [m, n]: a missing or unit axis repeats.
  const int64_t cm = c_shape.size() == 2 ? c_shape[0] : 1;
  const int64_t cn = c_shape.empty() ? 1 : c_shape.back();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] = cv[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
}

Status RunGemms(const GemmPlan& p, MatMulImpl impl, const float* a, const float* b, float* y, ThreadPool* pool,
                const std::string& who) {
  const int64_t batches = static_cast<int64_t>(p.a_offset.size());
  const int64_t out_mat = p.m * p.n;
  if (out_mat == 0) return Status::Ok();
  if (p.k == 0) {
    // Empty sums: alpha * 0 + beta * C.
    for (int64_t i = 0; i < batches * out_mat; ++i) y[i] = p.beta == 0.0f ? 0.0f : p.beta * y[i];
    return Status::Ok();
  }
  auto one = [&](int64_t i) -> bool {
    const float* ai = a + p.a_offset[static_cast<size_t>(i)];
    const float* bi = b + p.b_offset[static_cast<size_t>(i)];
    float* yi = y + i * out_mat;
    if (impl == MatMulImpl::kReference) {
      GemmReference(p.trans_a, p.trans_b, p.m, p.n, p.k, p.alpha, ai, p.lda, bi, p.ldb, p.beta, yi, p.n);
      return true;
    }
    return dnnl_sgemm(p.trans_a ? 'T' : 'N', p.trans_b ? 'T' : 'N', p.m, p.n, p.k, p.alpha, ai, p.lda, bi, p.ldb,
                      p.beta, yi, p.n) == dnnl_success;
  };
  const int threads = pool ? pool->size() : 1;
  const double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
  bool ok = true;
  if (batches >= threads && threads > 1 && flops < 8e6) {
    std::atomic<bool> all_ok{true};
    ParallelFor(pool, batches, 1, [&](int64_t begin, int64_t end) {
      SetOnednnThreads(1);
      for (int64_t i = begin; i < end; ++i)
        if (!one(i)) all_ok = false;
    });
    ok = all_ok;
  } else {
    SetOnednnThreads(threads);
    for (int64_t i = 0; i < batches && ok; ++i) ok = one(i);
  }
  SetOnednnThreads(threads);  // the caller took part in the pool: restore its team size
  if (!ok) return Internal(who, ": oneDNN sgemm failed");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<OpKernel>> CreateMatMulKernel(const NodeSignature& sig, MatMulImpl impl) {
  const Node& node = *sig.node;
  for (const ValueDesc& d : sig.inputs)
    if (d.dtype != DType::kF32 && d.dtype != DType::kUndefined)
      return Unsupported(node.Describe(), ": ", DTypeName(d.dtype), " matrix products are not supported on the CPU");
  const bool gemm = node.op_type == "Gemm";
  GemmPlan plan;
  if (gemm) {
    ITKIT_ASSIGN_OR_RETURN(plan, PlanGemm(sig));
  } else {
    ITKIT_ASSIGN_OR_RETURN(plan, PlanMatMul(sig));
  }
  const std::string who = node.Describe();
  return std::unique_ptr<OpKernel>(MakeKernel([plan, impl, who](KernelContext& ctx) {
    float* y = ctx.outputs[0]->data<float>();
    if (plan.has_c) BroadcastC(*ctx.inputs[2], plan.c_shape, plan.m, plan.n, y);
    return RunGemms(plan, impl, ctx.inputs[0]->data<float>(), ctx.inputs[1]->data<float>(), y, ctx.pool, who);
  }));
}

namespace {
Result<std::unique_ptr<OpKernel>> CreateAuto(const NodeSignature& sig) {
  return CreateMatMulKernel(sig, MatMulImpl::kAuto);
}
}  // namespace

void AppendMatMulKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "MatMul", CreateAuto});
  table.push_back({"", "Gemm", CreateAuto});
}

}  // namespace itkit::cpu
