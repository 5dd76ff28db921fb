// CPU kernels of the elementwise family, part 1: unary maps, Clip, Cast/CastLike,
// Dropout (inference) and Identity. Binary/variadic ops and Where are in
// elementwise_binary.cpp. Every kernel is a plain loop over contiguous memory split
// over the thread pool. f16 math runs through the f32 kernels (f16_adapter.h); Cast
// converts f16 itself and Identity/Dropout just copy bytes.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "cpu/elementwise_internal.h"

namespace itkit::cpu {
namespace {

enum class Un {
  kRelu, kLeakyRelu, kElu, kSelu, kSigmoid, kHardSigmoid, kTanh, kErf, kSoftplus, kSoftsign,
  kSqrt, kExp, kLog, kReciprocal, kFloor, kCeil, kRound, kSin, kCos, kTan, kAsin, kAcos, kAtan,
  kSinh, kCosh, kAsinh, kAcosh, kAtanh, kThresholdedRelu, kCelu, kHardSwish,
  // Ops below also take integer inputs.
  kAbs, kNeg, kSign, kShrink, kNot,
};

constexpr bool FloatOnly(Un k) { return k < Un::kAbs; }

struct UnaryParams {
  float alpha = 0.0f, beta = 0.0f, gamma = 0.0f;
};

UnaryParams ReadParams(Un k, const Attributes& a) {
  UnaryParams p;
  switch (k) {
    case Un::kLeakyRelu: p.alpha = a.GetFloat("alpha", 0.01f); break;
    case Un::kElu: case Un::kCelu: case Un::kThresholdedRelu: p.alpha = a.GetFloat("alpha", 1.0f); break;
    case Un::kSelu:
      p.alpha = a.GetFloat("alpha", 1.67326319217681884765625f);
      p.gamma = a.GetFloat("gamma", 1.05070102214813232421875f);
      break;
    case Un::kHardSigmoid:
      p.alpha = a.GetFloat("alpha", 0.2f);
      p.beta = a.GetFloat("beta", 0.5f);
      break;
    case Un::kShrink:
      p.alpha = a.GetFloat("lambd", 0.5f);
      p.beta = a.GetFloat("bias", 0.0f);
      break;
    default: break;
  }
  return p;
}

// Two's-complement negation without signed-overflow UB (INT_MIN stays INT_MIN).
template <typename T>
T WrapNeg(T x) {
  using U = std::make_unsigned_t<T>;
  return static_cast<T>(U(0) - static_cast<U>(x));
}

// min(1, max(0, v)) as selects (vectorisable; NaN stays NaN like torch.clamp).
inline float Clamp01(float v) {
  const float lo = v < 0.0f ? 0.0f : v;
  return lo > 1.0f ? 1.0f : lo;
}

template <Un K, typename T>
inline T Apply(T x, const UnaryParams& p) {
  if constexpr (K == Un::kRelu) return x < T(0) ? T(0) : x;  // NaN stays NaN, as in PyTorch
  // Written as selects of values computed unconditionally: with the default
  // -ftrapping-math GCC will not if-convert `x < 0 ? alpha * x : x` and the loop
  // stays a mispredicting branch instead of vector code.
  else if constexpr (K == Un::kLeakyRelu) return (x < 0.0f ? 0.0f : x) + p.alpha * (x < 0.0f ? x : 0.0f);
  else if constexpr (K == Un::kElu) return x >= 0.0f ? x : p.alpha * std::expm1(x);
  else if constexpr (K == Un::kSelu) return x > 0.0f ? p.gamma * x : p.gamma * p.alpha * std::expm1(x);
  else if constexpr (K == Un::kSigmoid) return 1.0f / (1.0f + std::exp(-x));
  else if constexpr (K == Un::kHardSigmoid) return Clamp01(p.alpha * x + p.beta);
  else if constexpr (K == Un::kTanh) return std::tanh(x);
  else if constexpr (K == Un::kErf) return std::erf(x);
  // log(1 + e^x) without overflow for large x.
  else if constexpr (K == Un::kSoftplus) return x > 0.0f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  else if constexpr (K == Un::kSoftsign) return x / (1.0f + std::fabs(x));
  else if constexpr (K == Un::kSqrt) return std::sqrt(x);
  else if constexpr (K == Un::kExp) return std::exp(x);
  else if constexpr (K == Un::kLog) return std::log(x);
  else if constexpr (K == Un::kReciprocal) return 1.0f / x;
  else if constexpr (K == Un::kFloor) return std::floor(x);
  else if constexpr (K == Un::kCeil) return std::ceil(x);
  else if constexpr (K == Un::kRound) return std::nearbyint(x);  // half to even (default FP mode)
  else if constexpr (K == Un::kSin) return std::sin(x);
  else if constexpr (K == Un::kCos) return std::cos(x);
  else if constexpr (K == Un::kTan) return std::tan(x);
  else if constexpr (K == Un::kAsin) return std::asin(x);
  else if constexpr (K == Un::kAcos) return std::acos(x);
  else if constexpr (K == Un::kAtan) return std::atan(x);
  else if constexpr (K == Un::kSinh) return std::sinh(x);
  else if constexpr (K == Un::kCosh) return std::cosh(x);
  else if constexpr (K == Un::kAsinh) return std::asinh(x);
  else if constexpr (K == Un::kAcosh) return std::acosh(x);
  else if constexpr (K == Un::kAtanh) return std::atanh(x);
  else if constexpr (K == Un::kThresholdedRelu) return x > p.alpha ? x : 0.0f;
  else if constexpr (K == Un::kCelu)
    return std::fmax(0.0f, x) + std::fmin(0.0f, p.alpha * std::expm1(x / p.alpha));
  else if constexpr (K == Un::kHardSwish) return x * Clamp01(x / 6.0f + 0.5f);
  else if constexpr (K == Un::kAbs) {
    if constexpr (std::is_unsigned_v<T>) return x;
    else if constexpr (std::is_floating_point_v<T>) return std::fabs(x);
    else return x < 0 ? WrapNeg(x) : x;
  } else if constexpr (K == Un::kNeg) {
    if constexpr (std::is_floating_point_v<T>) return -x;
    else return WrapNeg(x);
  } else if constexpr (K == Un::kSign) {
    if constexpr (std::is_floating_point_v<T>) return std::isnan(x) ? x : T((x > 0) - (x < 0));
    else return static_cast<T>((x > T(0)) - (x < T(0)));
  } else if constexpr (K == Un::kShrink) {
    // Computed in float as the attributes are floats; integer results truncate.
    const float v = static_cast<float>(x);
    const float r = v < -p.alpha ? v + p.beta : (v > p.alpha ? v - p.beta : 0.0f);
    if constexpr (std::is_floating_point_v<T>) return r;
    else return static_cast<T>(r);
  } else if constexpr (K == Un::kNot) {
    return x ? T(0) : T(1);
  }
}

// Elements per parallel range for transcendental maps (heavier per element).
constexpr int64_t kMathGrain = 1 << 13;

template <Un K, typename T>
Status RunUnary(KernelContext& ctx, UnaryParams p) {
  const T* in = ctx.inputs[0]->data<T>();
  T* out = ctx.outputs[0]->data<T>();
  ParallelFor(ctx.pool, ctx.outputs[0]->size(), kMathGrain, [&](int64_t b, int64_t e) {
    // A local copy: stores through `out` could alias a captured value, which would
    // force a reload per element and block vectorisation.
    const UnaryParams q = p;
    for (int64_t i = b; i < e; ++i) out[i] = Apply<K, T>(in[i], q);
  });
  return Status::Ok();
}

template <Un K>
Result<std::unique_ptr<OpKernel>> CreateUnary(const NodeSignature& sig) {
  const DType dt = sig.inputs[0].dtype;
  const UnaryParams p = ReadParams(K, sig.node->attrs);
  if constexpr (K == Un::kNot) {
    if (dt != DType::kBool) return UnsupportedDType(sig, dt);
    return MakeKernel([p](KernelContext& ctx) { return RunUnary<K, uint8_t>(ctx, p); });
  } else {
    if (dt == DType::kF32) return MakeKernel([p](KernelContext& ctx) { return RunUnary<K, float>(ctx, p); });
    if constexpr (!FloatOnly(K)) {
      switch (dt) {
        case DType::kI64: return MakeKernel([p](KernelContext& ctx) { return RunUnary<K, int64_t>(ctx, p); });
        case DType::kI32: return MakeKernel([p](KernelContext& ctx) { return RunUnary<K, int32_t>(ctx, p); });
        case DType::kU8:
          if (K == Un::kNeg) break;  // no unsigned negation in ONNX
          return MakeKernel([p](KernelContext& ctx) { return RunUnary<K, uint8_t>(ctx, p); });
        default: break;
      }
    }
    return UnsupportedDType(sig, dt);
  }
}

// Relu is listed with the integer ops in ONNX (opset 14) but computed by the float
// path above for f32; integers use the same expression.
template <>
Result<std::unique_ptr<OpKernel>> CreateUnary<Un::kRelu>(const NodeSignature& sig) {
  const UnaryParams p;
  switch (sig.inputs[0].dtype) {
    case DType::kF32: return MakeKernel([p](KernelContext& ctx) { return RunUnary<Un::kRelu, float>(ctx, p); });
    case DType::kI64: return MakeKernel([p](KernelContext& ctx) { return RunUnary<Un::kRelu, int64_t>(ctx, p); });
    case DType::kI32: return MakeKernel([p](KernelContext& ctx) { return RunUnary<Un::kRelu, int32_t>(ctx, p); });
    default: return UnsupportedDType(sig, sig.inputs[0].dtype);
  }
}

// ---- copies ---------------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateIdentity(const NodeSignature& /*sig*/) {
  return MakeKernel([](KernelContext& ctx) {
    ParallelMemcpy(ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), ctx.outputs[0]->bytes(), ctx.pool);
    return Status::Ok();
  });
}

// Inference Dropout: the identity plus an all-true mask. Training mode with a
// non-zero ratio would need random numbers; refuse it rather than guess.
Result<std::unique_ptr<OpKernel>> CreateDropout(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  return MakeKernel([desc](KernelContext& ctx) {
    const bool training = ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->GetAsInt64(0) != 0;
    const double ratio = ctx.inputs.size() > 1 && ctx.inputs[1] ? ctx.inputs[1]->GetAsDouble(0) : 0.5;
    if (training && ratio != 0.0)
      return Unsupported(desc, ": training-mode Dropout (random masking) is not supported");
    ParallelMemcpy(ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), ctx.outputs[0]->bytes(), ctx.pool);
    if (ctx.outputs.size() > 1 && ctx.outputs[1]) {
      Tensor& mask = *ctx.outputs[1];
      const int64_t n = mask.size();
      switch (mask.dtype()) {
        case DType::kBool: std::memset(mask.raw(), 1, static_cast<size_t>(n)); break;
        case DType::kF32: std::fill(mask.data<float>(), mask.data<float>() + n, 1.0f); break;
        case DType::kF16: std::fill(mask.data<uint16_t>(), mask.data<uint16_t>() + n, FloatToHalf(1.0f)); break;
        default: return Internal(desc, ": unexpected mask dtype");
      }
    }
    return Status::Ok();
  });
}

// ---- IsNaN / IsInf --------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateIsNaN(const NodeSignature& sig) {
  if (sig.inputs[0].dtype != DType::kF32) return UnsupportedDType(sig, sig.inputs[0].dtype);
  return MakeKernel([](KernelContext& ctx) {
    const float* in = ctx.inputs[0]->data<float>();
    uint8_t* out = ctx.outputs[0]->data<uint8_t>();
    ParallelFor(ctx.pool, ctx.outputs[0]->size(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = std::isnan(in[i]) ? 1 : 0;
    });
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateIsInf(const NodeSignature& sig) {
  if (sig.inputs[0].dtype != DType::kF32) return UnsupportedDType(sig, sig.inputs[0].dtype);
  const bool neg = sig.node->attrs.GetInt("detect_negative", 1) != 0;
  const bool pos = sig.node->attrs.GetInt("detect_positive", 1) != 0;
  return MakeKernel([neg, pos](KernelContext& ctx) {
    const float* in = ctx.inputs[0]->data<float>();
    uint8_t* out = ctx.outputs[0]->data<uint8_t>();
    ParallelFor(ctx.pool, ctx.outputs[0]->size(), kElementwiseGrain, [&](int64_t b, int64_t e) {
      const bool p = pos, n = neg;  // locals: uint8_t stores alias everything
      for (int64_t i = b; i < e; ++i) {
        const float x = in[i];
        out[i] = std::isinf(x) && ((x > 0 && p) || (x < 0 && n)) ? 1 : 0;
      }
    });
    return Status::Ok();
  });
}

// ---- Clip -----------------------------------------------------------------

template <typename T>
Status RunClip(KernelContext& ctx, bool from_attrs, float attr_min, float attr_max) {
  T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
  if constexpr (std::is_floating_point_v<T>) {
    lo = static_cast<T>(-std::numeric_limits<float>::infinity());
    hi = static_cast<T>(std::numeric_limits<float>::infinity());
  }
  if (from_attrs) {
    lo = static_cast<T>(attr_min);
    hi = static_cast<T>(attr_max);
  } else {
    if (ctx.inputs.size() > 1 && ctx.inputs[1]) lo = ctx.inputs[1]->data<T>()[0];
    if (ctx.inputs.size() > 2 && ctx.inputs[2]) hi = ctx.inputs[2]->data<T>()[0];
  }
  const T* in = ctx.inputs[0]->data<T>();
  T* out = ctx.outputs[0]->data<T>();
  ParallelFor(ctx.pool, ctx.outputs[0]->size(), kElementwiseGrain, [&](int64_t b, int64_t e) {
    // max then min (numpy/ONNX: min > max gives max); a NaN input stays NaN. Local
    // bounds so stores through `out` cannot alias them.
    const T lo_ = lo, hi_ = hi;
    for (int64_t i = b; i < e; ++i) {
      const T x = in[i];
      const T y = x < lo_ ? lo_ : x;
      out[i] = hi_ < y ? hi_ : y;
    }
  });
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreateClip(const NodeSignature& sig) {
  const bool from_attrs = sig.opset < 11;
  const float amin = sig.node->attrs.GetFloat("min", -std::numeric_limits<float>::infinity());
  const float amax = sig.node->attrs.GetFloat("max", std::numeric_limits<float>::infinity());
  std::unique_ptr<OpKernel> k;
  DispatchNumeric(sig.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    if (sig.inputs[0].dtype == DType::kBool) return;
    k = MakeKernel([=](KernelContext& ctx) { return RunClip<T>(ctx, from_attrs, amin, amax); });
  });
  if (!k) return UnsupportedDType(sig, sig.inputs[0].dtype);
  return k;
}

// ---- Cast -----------------------------------------------------------------

template <DType D> struct Storage;
template <> struct Storage<DType::kF32> { using type = float; };
template <> struct Storage<DType::kF16> { using type = uint16_t; };
template <> struct Storage<DType::kI64> { using type = int64_t; };
template <> struct Storage<DType::kI32> { using type = int32_t; };
template <> struct Storage<DType::kU8> { using type = uint8_t; };
template <> struct Storage<DType::kBool> { using type = uint8_t; };

template <typename Fn>
bool DispatchDType(DType d, const Fn& fn) {
  switch (d) {
    case DType::kF32: fn(std::integral_constant<DType, DType::kF32>{}); return true;
    case DType::kF16: fn(std::integral_constant<DType, DType::kF16>{}); return true;
    case DType::kI64: fn(std::integral_constant<DType, DType::kI64>{}); return true;
    case DType::kI32: fn(std::integral_constant<DType, DType::kI32>{}); return true;
    case DType::kU8: fn(std::integral_constant<DType, DType::kU8>{}); return true;
    case DType::kBool: fn(std::integral_constant<DType, DType::kBool>{}); return true;
    default: return false;
  }
}

// Float → integer: truncation toward zero; NaN gives 0 and values beyond int64
// saturate there, then narrower types wrap (C++20 conversions are modular) instead
// of the undefined behaviour of a direct out-of-range conversion.
template <typename I>
I TruncToInt(float v) {
  int64_t wide;
  if (std::isnan(v)) wide = 0;
  else if (v >= 9.2233720368547758e18f) wide = std::numeric_limits<int64_t>::max();
  else if (v <= -9.2233720368547758e18f) wide = std::numeric_limits<int64_t>::min();
  else wide = static_cast<int64_t>(v);
  return static_cast<I>(wide);
}

template <DType From>
auto Load(typename Storage<From>::type v) {
  if constexpr (From == DType::kF16) return FloatFromHalfFast(v);
  else if constexpr (From == DType::kBool) return static_cast<uint8_t>(v != 0);
  else return v;
}

template <DType To, typename V>
typename Storage<To>::type StoreAs(V v) {
  using T = typename Storage<To>::type;
  if constexpr (To == DType::kF32) return static_cast<float>(v);
  else if constexpr (To == DType::kF16) return HalfFromFloatFast(static_cast<float>(v));
  else if constexpr (To == DType::kBool) return v != V(0) ? 1 : 0;  // NaN counts as true
  else if constexpr (std::is_floating_point_v<V>) return TruncToInt<T>(v);
  else return static_cast<T>(v);
}

template <DType From, DType To>
Status RunCast(KernelContext& ctx) {
  using F = typename Storage<From>::type;
  using T = typename Storage<To>::type;
  const F* in = ctx.inputs[0]->data<F>();
  T* out = ctx.outputs[0]->data<T>();
  ParallelFor(ctx.pool, ctx.outputs[0]->size(), kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = StoreAs<To>(Load<From>(in[i]));
  });
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreateCast(const NodeSignature& sig) {
  const DType from = sig.inputs[0].dtype, to = sig.outputs[0].dtype;
  if (from == to) return CreateIdentity(sig);
  std::unique_ptr<OpKernel> k;
  DispatchDType(from, [&](auto f) {
    DispatchDType(to, [&](auto t) {
      k = MakeKernel([](KernelContext& ctx) { return RunCast<decltype(f)::value, decltype(t)::value>(ctx); });
    });
  });
  if (!k)
    return Unsupported(sig.node->Describe(), ": cast from ", DTypeName(from), " to ", DTypeName(to),
                       " is not supported");
  return k;
}

}  // namespace

void AppendElementwiseKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Relu", &WithF16<&CreateUnary<Un::kRelu>>});
  table.push_back({"", "LeakyRelu", &WithF16<&CreateUnary<Un::kLeakyRelu>>});
  table.push_back({"", "Elu", &WithF16<&CreateUnary<Un::kElu>>});
  table.push_back({"", "Selu", &WithF16<&CreateUnary<Un::kSelu>>});
  table.push_back({"", "Sigmoid", &WithF16<&CreateUnary<Un::kSigmoid>>});
  table.push_back({"", "HardSigmoid", &WithF16<&CreateUnary<Un::kHardSigmoid>>});
  table.push_back({"", "Tanh", &WithF16<&CreateUnary<Un::kTanh>>});
  table.push_back({"", "Erf", &WithF16<&CreateUnary<Un::kErf>>});
  table.push_back({"", "Softplus", &WithF16<&CreateUnary<Un::kSoftplus>>});
  table.push_back({"", "Softsign", &WithF16<&CreateUnary<Un::kSoftsign>>});
  table.push_back({"", "Sqrt", &WithF16<&CreateUnary<Un::kSqrt>>});
  table.push_back({"", "Exp", &WithF16<&CreateUnary<Un::kExp>>});
  table.push_back({"", "Log", &WithF16<&CreateUnary<Un::kLog>>});
  table.push_back({"", "Reciprocal", &WithF16<&CreateUnary<Un::kReciprocal>>});
  table.push_back({"", "Floor", &WithF16<&CreateUnary<Un::kFloor>>});
  table.push_back({"", "Ceil", &WithF16<&CreateUnary<Un::kCeil>>});
  table.push_back({"", "Round", &WithF16<&CreateUnary<Un::kRound>>});
  table.push_back({"", "Sin", &WithF16<&CreateUnary<Un::kSin>>});
  table.push_back({"", "Cos", &WithF16<&CreateUnary<Un::kCos>>});
  table.push_back({"", "Tan", &WithF16<&CreateUnary<Un::kTan>>});
  table.push_back({"", "Asin", &WithF16<&CreateUnary<Un::kAsin>>});
  table.push_back({"", "Acos", &WithF16<&CreateUnary<Un::kAcos>>});
  table.push_back({"", "Atan", &WithF16<&CreateUnary<Un::kAtan>>});
  table.push_back({"", "Sinh", &WithF16<&CreateUnary<Un::kSinh>>});
  table.push_back({"", "Cosh", &WithF16<&CreateUnary<Un::kCosh>>});
  table.push_back({"", "Asinh", &WithF16<&CreateUnary<Un::kAsinh>>});
  table.push_back({"", "Acosh", &WithF16<&CreateUnary<Un::kAcosh>>});
  table.push_back({"", "Atanh", &WithF16<&CreateUnary<Un::kAtanh>>});
  table.push_back({"", "ThresholdedRelu", &WithF16<&CreateUnary<Un::kThresholdedRelu>>});
  table.push_back({"", "Celu", &WithF16<&CreateUnary<Un::kCelu>>});
  table.push_back({"", "HardSwish", &WithF16<&CreateUnary<Un::kHardSwish>>});
  table.push_back({"", "Abs", &WithF16<&CreateUnary<Un::kAbs>>});
  table.push_back({"", "Neg", &WithF16<&CreateUnary<Un::kNeg>>});
  table.push_back({"", "Sign", &WithF16<&CreateUnary<Un::kSign>>});
  table.push_back({"", "Shrink", &WithF16<&CreateUnary<Un::kShrink>>});
  table.push_back({"", "Not", &CreateUnary<Un::kNot>});
  table.push_back({"", "Identity", &CreateIdentity});
  table.push_back({"", "Dropout", &CreateDropout});
  table.push_back({"", "IsNaN", &WithF16<&CreateIsNaN>});
  table.push_back({"", "IsInf", &WithF16<&CreateIsInf>});
  table.push_back({"", "Clip", &WithF16<&CreateClip>});
  table.push_back({"", "Cast", &CreateCast});
  table.push_back({"", "CastLike", &CreateCast});
  AppendElementwiseBinaryKernels(table);
}

}  // namespace itkit::cpu
