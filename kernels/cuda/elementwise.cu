// Elementwise ops on f32/f16 (math in f32): unary maps, Clip, Cast between float
// types, and numpy-broadcast binaries (Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean of
// two inputs, PRelu). Broadcast operands are planned on the host (layout_utils.h) so
// the common cases (same shape, scalar, per-channel) reach the kernel as 1-2 dims.
// itkit.FusedElementwise (fused_elementwise.cu) is added to this family's table.
#include <cmath>
#include <limits>

#include "cuda/strided.cuh"

namespace itkit::cuda {
namespace {

// ---- unary ---------------------------------------------------------------------------

enum class Unary : int {
  kRelu, kLeakyRelu, kSigmoid, kTanh, kErf, kExp, kLog, kSqrt, kAbs, kNeg, kReciprocal, kFloor, kCeil,
  kRound, kSoftplus, kSoftsign, kElu, kSelu, kHardSigmoid, kHardSwish, kSin, kCos, kClip, kCopy
};

struct UnaryParams {
  Unary op;
  float a = 0.0f, b = 0.0f;  // alpha/beta/gamma, or Clip's min/max
};

__device__ __forceinline__ float ApplyUnary(float x, const UnaryParams& p) {
  switch (p.op) {
    case Unary::kRelu: return x < 0.0f ? 0.0f : x;  // NaN stays NaN, as in PyTorch
    case Unary::kLeakyRelu: return x >= 0.0f ? x : x * p.a;
    case Unary::kSigmoid: return 1.0f / (1.0f + expf(-x));
    case Unary::kTanh: return tanhf(x);
    case Unary::kErf: return erff(x);
    case Unary::kExp: return expf(x);
    case Unary::kLog: return logf(x);
    case Unary::kSqrt: return sqrtf(x);
    case Unary::kAbs: return fabsf(x);
    case Unary::kNeg: return -x;
    case Unary::kReciprocal: return 1.0f / x;
    case Unary::kFloor: return floorf(x);
    case Unary::kCeil: return ceilf(x);
    case Unary::kRound: return rintf(x);  // half to even, as ONNX Round
    case Unary::kSoftplus: return x > 20.0f ? x : log1pf(expf(x));
    case Unary::kSoftsign: return x / (1.0f + fabsf(x));
    case Unary::kElu: return x >= 0.0f ? x : p.a * (expf(x) - 1.0f);
    case Unary::kSelu: return x > 0.0f ? p.b * x : p.b * (p.a * expf(x) - p.a);
    case Unary::kHardSigmoid: return fmaxf(0.0f, fminf(1.0f, p.a * x + p.b));
    case Unary::kHardSwish: return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
    case Unary::kSin: return sinf(x);
    case Unary::kCos: return cosf(x);
    case Unary::kClip: {  // selects, as the CPU: a NaN input stays NaN (fmaxf would clip it)
      const float lo = x < p.a ? p.a : x;
      return p.b < lo ? p.b : lo;
    }
    case Unary::kCopy: return x;
  }
  return x;
}

template <typename Tin, typename Tout>
__global__ void UnaryKernel(const Tin* __restrict__ x, Tout* __restrict__ y, int64_t n, UnaryParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = FromF<Tout>(ApplyUnary(ToF(x[i]), p));
}

struct UnaryInfo {
  std::string_view op;
  Unary kind;
};
constexpr UnaryInfo kUnaryOps[] = {
    {"Relu", Unary::kRelu}, {"LeakyRelu", Unary::kLeakyRelu}, {"Sigmoid", Unary::kSigmoid}, {"Tanh", Unary::kTanh},
    {"Erf", Unary::kErf}, {"Exp", Unary::kExp}, {"Log", Unary::kLog}, {"Sqrt", Unary::kSqrt}, {"Abs", Unary::kAbs},
    {"Neg", Unary::kNeg}, {"Reciprocal", Unary::kReciprocal}, {"Floor", Unary::kFloor}, {"Ceil", Unary::kCeil},
    {"Round", Unary::kRound}, {"Softplus", Unary::kSoftplus}, {"Softsign", Unary::kSoftsign}, {"Elu", Unary::kElu},
    {"Selu", Unary::kSelu}, {"HardSigmoid", Unary::kHardSigmoid}, {"HardSwish", Unary::kHardSwish},
    {"Sin", Unary::kSin}, {"Cos", Unary::kCos}, {"Clip", Unary::kClip}, {"Identity", Unary::kCopy},
    {"Dropout", Unary::kCopy}, {"Cast", Unary::kCopy}, {"CastLike", Unary::kCopy}};

const UnaryInfo* FindUnary(std::string_view op) {
  for (const UnaryInfo& u : kUnaryOps)
    if (u.op == op) return &u;
  return nullptr;
}

// A scalar of a constant input (Clip's min/max), or `def` when the input is omitted.
Result<float> ConstantScalar(const NodeSignature& sig, size_t i, float def) {
  if (i >= sig.inputs.size() || sig.inputs[i].dtype == DType::kUndefined) return def;
  const Tensor* t = sig.inputs[i].constant;
  if (!t) return Unsupported("input ", i, " is not a constant");
  if (t->size() != 1) return Unsupported("input ", i, " is not a scalar");
  return static_cast<float>(t->GetAsDouble(0));
}

Result<UnaryParams> GetUnaryParams(const NodeSignature& sig) {
  const Node& node = *sig.node;
  const UnaryInfo* info = FindUnary(node.op_type);
  if (!info) return Unsupported("not a unary op");
  UnaryParams p;
  p.op = info->kind;
  const Attributes& a = node.attrs;
  switch (p.op) {
    case Unary::kLeakyRelu: p.a = a.GetFloat("alpha", 0.01f); break;
    case Unary::kElu: p.a = a.GetFloat("alpha", 1.0f); break;
    case Unary::kSelu:
      p.a = a.GetFloat("alpha", 1.67326319217681884765625f);
      p.b = a.GetFloat("gamma", 1.05070102214813232421875f);
      break;
    case Unary::kHardSigmoid:
      p.a = a.GetFloat("alpha", 0.2f);
      p.b = a.GetFloat("beta", 0.5f);
      break;
    case Unary::kClip:
      if (sig.opset < 11) {
        p.a = a.GetFloat("min", -std::numeric_limits<float>::infinity());
        p.b = a.GetFloat("max", std::numeric_limits<float>::infinity());
      } else {
        ITKIT_ASSIGN_OR_RETURN(p.a, ConstantScalar(sig, 1, -std::numeric_limits<float>::infinity()));
        ITKIT_ASSIGN_OR_RETURN(p.b, ConstantScalar(sig, 2, std::numeric_limits<float>::infinity()));
      }
      break;
    case Unary::kSoftplus:
    case Unary::kCopy:
    default: break;
  }
  return p;
}

bool UnarySupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  const std::string& op = sig.node->op_type;
  if (sig.inputs.empty()) return Reject(reason, "no input");
  const DType in = sig.inputs[0].dtype, out = sig.outputs[0].dtype;
  if (op == "Dropout" && sig.node->outputs.size() > 1 && !sig.node->outputs[1].empty())
    return Reject(reason, "Dropout's mask output");
  if (op == "Dropout" && sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined) {
    // Only inference Dropout is a copy: training mode must be a constant false, or the
    // ratio a constant 0 (the CPU kernel decides, and refuses random masking).
    const Tensor* training = sig.inputs[2].constant;
    const Tensor* ratio = sig.inputs.size() > 1 ? sig.inputs[1].constant : nullptr;
    const bool inference = training && training->size() == 1 && training->GetAsInt64(0) == 0;
    const bool zero_ratio = ratio && ratio->size() == 1 && ratio->GetAsDouble(0) == 0.0;
    if (!inference && !zero_ratio) return Reject(reason, "training-mode Dropout");
  }
  if (op == "Identity" || op == "Dropout" || ((op == "Cast" || op == "CastLike") && in == out)) {
    if (in != out) return Reject(reason, "dtype change");
    return true;  // any dtype: a device copy
  }
  if (!IsF32OrF16(in) || !IsF32OrF16(out)) return Reject(reason, "dtype ", DTypeName(in), " -> ", DTypeName(out));
  auto p = GetUnaryParams(sig);
  if (!p.ok()) return Reject(reason, p.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateUnary(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(UnaryParams p, GetUnaryParams(sig));
  const DType in = sig.inputs[0].dtype, out = sig.outputs[0].dtype;
  const int64_t n = ElementCount(sig.outputs[0].shape);
  if (in == out && p.op == Unary::kCopy) {
    return MakeKernel(ctx, [c = ctx.get()](KernelContext& kc) -> Status {
      if (kc.outputs[0]->raw() == kc.inputs[0]->raw() || kc.inputs[0]->bytes() == 0) return Status::Ok();
      ITKIT_CUDA_CHECK(cudaMemcpyAsync(kc.outputs[0]->raw(), kc.inputs[0]->raw(), kc.inputs[0]->bytes(),
                                       cudaMemcpyDeviceToDevice, c->stream));
      return Status::Ok();
    });
  }
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    return DispatchFloat(in, [&]<typename Tin>() {
      return DispatchFloat(out, [&]<typename Tout>() -> Status {
        UnaryKernel<Tin, Tout><<<GridFor(n, *c), kThreads, 0, c->stream>>>(kc.inputs[0]->data<Tin>(),
                                                                         kc.outputs[0]->data<Tout>(), n, p);
        ITKIT_CUDA_CHECK_LAUNCH("UnaryKernel");
        return Status::Ok();
      });
    });
  });
}

// ---- binary --------------------------------------------------------------------------

enum class Binary : int { kAdd, kSub, kMul, kDiv, kPow, kMax, kMin, kMean, kPRelu };

__device__ __forceinline__ float ApplyBinary(float a, float b, Binary op) {
  switch (op) {
    case Binary::kAdd: return a + b;
    case Binary::kSub: return a - b;
    case Binary::kMul: return a * b;
    case Binary::kDiv: return a / b;
    case Binary::kPow: return powf(a, b);
    // NaN in either operand gives NaN, as on the CPU (fmaxf/fminf would drop it).
    case Binary::kMax: return (a != a || b != b) ? a + b : fmaxf(a, b);
    case Binary::kMin: return (a != a || b != b) ? a + b : fminf(a, b);
    case Binary::kMean: return (a + b) * 0.5f;
    case Binary::kPRelu: return a < 0.0f ? a * b : a;
  }
  return a;
}

// out[i] = op(a[offset_a(i)], b[offset_b(i)]) with out contiguous in iteration order.
template <typename T>
__global__ void BinaryKernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t n,
                             StridedArgs<2> args, Binary op) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[2];
    DecodeOffsets(args, i, off);
    out[i] = FromF<T>(ApplyBinary(ToF(a[off[0]]), ToF(b[off[1]]), op));
  }
}

// Same shapes (the common case): no index decode.
template <typename T>
__global__ void BinaryFlatKernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t n,
                                 Binary op) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = FromF<T>(ApplyBinary(ToF(a[i]), ToF(b[i]), op));
}

struct BinaryInfo {
  std::string_view op;
  Binary kind;
};
constexpr BinaryInfo kBinaryOps[] = {{"Add", Binary::kAdd}, {"Sub", Binary::kSub},   {"Mul", Binary::kMul},
                                     {"Div", Binary::kDiv}, {"Pow", Binary::kPow},   {"Max", Binary::kMax},
                                     {"Min", Binary::kMin}, {"Sum", Binary::kAdd},   {"Mean", Binary::kMean},
                                     {"PRelu", Binary::kPRelu}};

const BinaryInfo* FindBinary(std::string_view op) {
  for (const BinaryInfo& b : kBinaryOps)
    if (b.op == op) return &b;
  return nullptr;
}

bool BinarySupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  const bool variadic = sig.node->op_type == "Sum" || sig.node->op_type == "Mean" || sig.node->op_type == "Max" ||
                        sig.node->op_type == "Min";
  if (sig.inputs.size() != 2 && !(variadic && sig.inputs.size() == 1))
    return Reject(reason, sig.inputs.size(), " inputs (the CUDA kernel takes 2)");
  for (const ValueDesc& d : sig.inputs)
    if (d.dtype != sig.outputs[0].dtype || !IsF32OrF16(d.dtype))
      return Reject(reason, "dtype ", DTypeName(d.dtype), " (f32/f16 only)");
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateBinary(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const BinaryInfo* info = FindBinary(sig.node->op_type);
  if (!info) return Unsupported("not a binary op");
  const Shape& out_shape = sig.outputs[0].shape;
  const int64_t n = ElementCount(out_shape);
  const DType dtype = sig.outputs[0].dtype;
  if (sig.inputs.size() == 1) {  // Sum/Mean/Max/Min of one input: a copy
    return MakeKernel(ctx, [c = ctx.get()](KernelContext& kc) -> Status {
      if (kc.inputs[0]->bytes() == 0) return Status::Ok();
      ITKIT_CUDA_CHECK(cudaMemcpyAsync(kc.outputs[0]->raw(), kc.inputs[0]->raw(), kc.inputs[0]->bytes(),
                                       cudaMemcpyDeviceToDevice, c->stream));
      return Status::Ok();
    });
  }
  StridedPlan plan;
  plan.dims = out_shape;
  plan.strides = {BroadcastStrides(sig.inputs[0].shape, out_shape), BroadcastStrides(sig.inputs[1].shape, out_shape)};
  plan = Collapse(std::move(plan));
  const bool flat = plan.dims.size() == 1 && plan.strides[0][0] == 1 && plan.strides[1][0] == 1;
  ITKIT_ASSIGN_OR_RETURN(StridedArgs<2> args, ToArgs<2>(plan));
  const Binary op = info->kind;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      const T* a = kc.inputs[0]->data<T>();
      const T* b = kc.inputs[1]->data<T>();
      T* y = kc.outputs[0]->data<T>();
      if (flat) {
        BinaryFlatKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(a, b, y, n, op);
      } else {
        BinaryKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(a, b, y, n, args, op);
      }
      ITKIT_CUDA_CHECK_LAUNCH("BinaryKernel");
      return Status::Ok();
    });
  });
}

}  // namespace

// itkit.FusedElementwise, fused_elementwise.cu: part of this family's table.
void AppendFusedElementwiseOps(std::vector<CudaOpEntry>& table);

void AppendElementwiseOps(std::vector<CudaOpEntry>& table) {
  for (const UnaryInfo& u : kUnaryOps) table.push_back({"", u.op, UnarySupports, CreateUnary});
  for (const BinaryInfo& b : kBinaryOps) table.push_back({"", b.op, BinarySupports, CreateBinary});
  AppendFusedElementwiseOps(table);
}

}  // namespace itkit::cuda
