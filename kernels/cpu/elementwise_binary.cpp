// CPU kernels of the elementwise family, part 2: numpy-broadcasting binary ops,
// variadic Sum/Mean/Max/Min, Pow, PRelu and Where. Each kernel plans its broadcast
// once (nd_iter.h: size-1 dims dropped, contiguous dims merged) and its inner loops
// are specialised for unit/zero strides, which is what the common cases reduce to.
#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu/elementwise_internal.h"

namespace itkit::cpu {
namespace {

enum class Bin {
  kAdd, kSub, kMul, kDiv, kMod, kFMod, kMin, kMax, kPRelu,
  kEqual, kLess, kLessEq, kGreater, kGreaterEq,  // → bool
  kAnd, kOr, kXor,                               // bool → bool
};

constexpr bool IsCompare(Bin k) { return k >= Bin::kEqual; }
constexpr bool IsLogic(Bin k) { return k >= Bin::kAnd; }

// Integer arithmetic wraps (two's complement) instead of the UB of signed overflow.
template <typename T>
using Unsigned = std::make_unsigned_t<std::conditional_t<std::is_integral_v<T>, T, int>>;

template <typename T>
inline T WrapAdd(T a, T b) {
  if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
  else return a + b;
}
template <typename T>
inline T WrapSub(T a, T b) {
  if constexpr (std::is_integral_v<T>) return static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
  else return a - b;
}
template <typename T>
inline T WrapMul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    // Promote narrow unsigned types past int so the product cannot overflow int.
    using W = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, Unsigned<T>>;
    return static_cast<T>(static_cast<W>(static_cast<Unsigned<T>>(a)) * static_cast<W>(static_cast<Unsigned<T>>(b)));
  } else {
    return a * b;
  }
}

// Integer division truncates toward zero like C and ONNX. Division by zero is
// undefined in ONNX; we give 0 rather than trap. INT_MIN / -1 wraps.
template <typename T>
inline T IntDiv(T a, T b) {
  if (b == 0) return 0;
  if constexpr (std::is_signed_v<T>) {
    if (b == -1) return WrapSub(T(0), a);
  }
  return static_cast<T>(a / b);
}

// Remainder with the sign of the dividend (C fmod, `fmod=1`).
template <typename T>
inline T TruncMod(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::fmod(a, b);
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed_v<T>) {
      if (b == -1) return 0;
    }
    return static_cast<T>(a % b);
  }
}

// Remainder with the sign of the divisor (Python/numpy `%`, `fmod=0`).
template <typename T>
inline T FloorMod(T a, T b) {
  T r = TruncMod(a, b);
  if constexpr (std::is_signed_v<T> || std::is_floating_point_v<T>) {
    if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
  }
  return r;
}

template <typename T>
inline bool IsNaN(T x) {
  if constexpr (std::is_floating_point_v<T>) return x != x;
  else return false;
}

template <Bin K, typename T>
inline auto Apply(T a, T b) {
  if constexpr (K == Bin::kAdd) return WrapAdd(a, b);
  else if constexpr (K == Bin::kSub) return WrapSub(a, b);
  else if constexpr (K == Bin::kMul) return WrapMul(a, b);
  else if constexpr (K == Bin::kDiv) {
    if constexpr (std::is_floating_point_v<T>) return a / b;
    else return IntDiv(a, b);
  } else if constexpr (K == Bin::kMod) return FloorMod(a, b);
  else if constexpr (K == Bin::kFMod) return TruncMod(a, b);
  // NaN in either operand gives NaN, as in numpy and PyTorch.
  else if constexpr (K == Bin::kMax) return (a > b || IsNaN(a)) ? a : b;
  else if constexpr (K == Bin::kMin) return (a < b || IsNaN(a)) ? a : b;
  // Selects rather than a guarded multiply so the loop vectorises (see LeakyRelu);
  // only a non-finite slope differs (inf * 0 on the positive side).
  else if constexpr (K == Bin::kPRelu) return WrapAdd(a < T(0) ? T(0) : a, WrapMul(b, a < T(0) ? a : T(0)));
  else if constexpr (K == Bin::kEqual) return static_cast<uint8_t>(a == b);
  else if constexpr (K == Bin::kLess) return static_cast<uint8_t>(a < b);
  else if constexpr (K == Bin::kLessEq) return static_cast<uint8_t>(a <= b);
  else if constexpr (K == Bin::kGreater) return static_cast<uint8_t>(a > b);
  else if constexpr (K == Bin::kGreaterEq) return static_cast<uint8_t>(a >= b);
  else if constexpr (K == Bin::kAnd) return static_cast<uint8_t>((a != 0) & (b != 0));
  else if constexpr (K == Bin::kOr) return static_cast<uint8_t>((a != 0) | (b != 0));
  else if constexpr (K == Bin::kXor) return static_cast<uint8_t>((a != 0) ^ (b != 0));
}

// out = f(a, b) over a broadcast plan whose operands are (out, a, b).
template <typename A, typename B, typename O, typename F>
void BinaryRuns(const NdIter& it, const A* a, const B* b, O* out, ThreadPool* pool, const F& f) {
  const int64_t sa = it.inner_stride(1), sb = it.inner_stride(2);
  ForEachRun(it, pool, kElementwiseGrain, [&](const int64_t* off, int64_t len) {
    O* o = out + off[0];
    const A* pa = a + off[1];
    const B* pb = b + off[2];
    if (sa == 1 && sb == 1) {
      for (int64_t i = 0; i < len; ++i) o[i] = f(pa[i], pb[i]);
    } else if (sa == 1 && sb == 0) {
      const B vb = *pb;
      for (int64_t i = 0; i < len; ++i) o[i] = f(pa[i], vb);
    } else if (sa == 0 && sb == 1) {
      const A va = *pa;
      for (int64_t i = 0; i < len; ++i) o[i] = f(va, pb[i]);
    } else {
      for (int64_t i = 0; i < len; ++i) o[i] = f(pa[i * sa], pb[i * sb]);
    }
  });
}

Result<NdIter> PlanBroadcast(const Shape& out, const Shape& a, const Shape& b) {
  return MakeNdIter(out, {ContiguousStrides(out), BroadcastStrides(a, out), BroadcastStrides(b, out)});
}

template <Bin K, typename T>
Status RunBinary(const NdIter& it, KernelContext& ctx) {
  using O = std::conditional_t<IsCompare(K), uint8_t, T>;
  BinaryRuns(it, ctx.inputs[0]->data<T>(), ctx.inputs[1]->data<T>(), ctx.outputs[0]->data<O>(), ctx.pool,
             [](T x, T y) { return Apply<K, T>(x, y); });
  return Status::Ok();
}

// Calls make(T{}) for the arithmetic type an op computes `dtype` with; false if the
// op does not accept it. bool and uint8 share a storage type but not the ops.
template <Bin K, typename Fn>
bool DispatchBinary(DType dtype, const Fn& make) {
  // `if constexpr` keeps meaningless instantiations (And on float) out of the binary.
  switch (dtype) {
    case DType::kF32:
      if constexpr (!IsLogic(K)) { make(float{}); return true; }
      return false;
    case DType::kI64:
      if constexpr (!IsLogic(K)) { make(int64_t{}); return true; }
      return false;
    case DType::kI32:
      if constexpr (!IsLogic(K)) { make(int32_t{}); return true; }
      return false;
    case DType::kU8:
      if constexpr (!IsLogic(K) && K != Bin::kPRelu) { make(uint8_t{}); return true; }
      return false;
    case DType::kBool:
      if constexpr (IsLogic(K) || K == Bin::kEqual) { make(uint8_t{}); return true; }
      return false;
    default: return false;
  }
}

template <Bin K>
Result<std::unique_ptr<OpKernel>> CreateBinary(const NodeSignature& sig) {
  ITKIT_ASSIGN_OR_RETURN(NdIter it, PlanBroadcast(sig.outputs[0].shape, sig.inputs[0].shape, sig.inputs[1].shape));
  std::unique_ptr<OpKernel> k;
  DispatchBinary<K>(sig.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    k = MakeKernel([it](KernelContext& ctx) { return RunBinary<K, T>(it, ctx); });
  });
  if (!k) return UnsupportedDType(sig, sig.inputs[0].dtype);
  return k;
}

Result<std::unique_ptr<OpKernel>> CreateMod(const NodeSignature& sig) {
  return sig.node->attrs.GetInt("fmod", 0) ? CreateBinary<Bin::kFMod>(sig) : CreateBinary<Bin::kMod>(sig);
}

// ---- Pow ------------------------------------------------------------------

// Double → integer without UB: NaN → 0, out-of-range saturates.
template <typename I>
I SaturateToInt(double v) {
  if (std::isnan(v)) return 0;
  if (v >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  if (v <= static_cast<double>(std::numeric_limits<I>::lowest())) return std::numeric_limits<I>::lowest();
  return static_cast<I>(v);
}

template <typename A, typename B>
inline A PowOp(A a, B b) {
  if constexpr (std::is_floating_point_v<A>) {
    return std::pow(a, static_cast<A>(b));
  } else if constexpr (std::is_floating_point_v<B>) {
    return SaturateToInt<A>(std::pow(static_cast<double>(a), static_cast<double>(b)));
  } else {
    // Integer power by squaring (wrapping); negative exponents truncate 1/a^n.
    if constexpr (std::is_signed_v<B>) {
      if (b < 0) return a == 1 ? A(1) : (a == -1 ? ((b & 1) ? A(-1) : A(1)) : A(0));
    }
    A result = 1, base = a;
    for (B e = b; e > 0; e >>= 1) {
      if (e & 1) result = WrapMul(result, base);
      base = WrapMul(base, base);
    }
    return result;
  }
}

template <typename A, typename B>
Status RunPow(const NdIter& it, KernelContext& ctx) {
  const A* a = ctx.inputs[0]->data<A>();
  const B* b = ctx.inputs[1]->data<B>();
  A* out = ctx.outputs[0]->data<A>();
  // x^2 (variance, Dice losses) is by far the most common exponent: plain multiply.
  if constexpr (std::is_floating_point_v<A>) {
    if (ctx.inputs[1]->size() == 1 && static_cast<double>(b[0]) == 2.0) {
      BinaryRuns(it, a, b, out, ctx.pool, [](A x, B) { return x * x; });
      return Status::Ok();
    }
  }
  BinaryRuns(it, a, b, out, ctx.pool, [](A x, B y) { return PowOp<A, B>(x, y); });
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreatePow(const NodeSignature& sig) {
  ITKIT_ASSIGN_OR_RETURN(NdIter it, PlanBroadcast(sig.outputs[0].shape, sig.inputs[0].shape, sig.inputs[1].shape));
  std::unique_ptr<OpKernel> k;
  auto with_exponent = [&](auto base_tag) {
    using A = decltype(base_tag);
    auto make = [&](auto exp_tag) {
      using B = decltype(exp_tag);
      k = MakeKernel([it](KernelContext& ctx) { return RunPow<A, B>(it, ctx); });
    };
    switch (sig.inputs[1].dtype) {
      case DType::kF32: make(float{}); break;
      case DType::kI64: make(int64_t{}); break;
      case DType::kI32: make(int32_t{}); break;
      case DType::kU8: make(uint8_t{}); break;
      default: break;
    }
  };
  switch (sig.inputs[0].dtype) {
    case DType::kF32: with_exponent(float{}); break;
    case DType::kI64: with_exponent(int64_t{}); break;
    case DType::kI32: with_exponent(int32_t{}); break;
    default: break;
  }
  if (!k)
    return Unsupported(sig.node->Describe(), ": Pow of ", DTypeName(sig.inputs[0].dtype), " by ",
                       DTypeName(sig.inputs[1].dtype), " is not supported by the CPU kernel");
  return k;
}

// ---- variadic Sum / Mean / Max / Min --------------------------------------

// Folds the inputs into the output: out = in0 ∘ in1, then out = out ∘ in_k. The
// output has the full broadcast shape, so in-place accumulation is elementwise.
template <Bin K, typename T>
Status RunVariadic(const std::vector<NdIter>& steps, bool mean, KernelContext& ctx) {
  T* out = ctx.outputs[0]->data<T>();
  const auto f = [](T x, T y) { return Apply<K, T>(x, y); };
  const int64_t n = static_cast<int64_t>(ctx.inputs.size());
  if (n == 1) {
    StridedCopy(steps[0], out, ctx.inputs[0]->raw(), sizeof(T), ctx.pool);
  } else {
    BinaryRuns(steps[0], ctx.inputs[0]->data<T>(), ctx.inputs[1]->data<T>(), out, ctx.pool, f);
    for (int64_t i = 2; i < n; ++i)
      BinaryRuns(steps[static_cast<size_t>(i - 1)], static_cast<const T*>(out), ctx.inputs[static_cast<size_t>(i)]->data<T>(),
                 out, ctx.pool, f);
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (mean) {
      ParallelFor(ctx.pool, ctx.outputs[0]->size(), kElementwiseGrain, [&](int64_t b, int64_t e) {
        const T count = static_cast<T>(n);  // local: `out` stores could alias a capture
        for (int64_t i = b; i < e; ++i) out[i] /= count;
      });
    }
  }
  return Status::Ok();
}

template <Bin K, bool kMean>
Result<std::unique_ptr<OpKernel>> CreateVariadic(const NodeSignature& sig) {
  const Shape& out = sig.outputs[0].shape;
  std::vector<NdIter> steps;
  if (sig.inputs.size() == 1) {
    ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(out, {ContiguousStrides(out), BroadcastStrides(sig.inputs[0].shape, out)}));
    steps.push_back(it);
  } else {
    ITKIT_ASSIGN_OR_RETURN(NdIter first, PlanBroadcast(out, sig.inputs[0].shape, sig.inputs[1].shape));
    steps.push_back(first);
    for (size_t i = 2; i < sig.inputs.size(); ++i) {
      ITKIT_ASSIGN_OR_RETURN(NdIter it, PlanBroadcast(out, out, sig.inputs[i].shape));
      steps.push_back(it);
    }
  }
  std::unique_ptr<OpKernel> k;
  const DType dt = sig.inputs[0].dtype;
  if (dt == DType::kBool || (kMean && dt != DType::kF32)) return UnsupportedDType(sig, dt);
  DispatchBinary<K>(dt, [&](auto tag) {
    using T = decltype(tag);
    k = MakeKernel([steps](KernelContext& ctx) { return RunVariadic<K, T>(steps, kMean, ctx); });
  });
  if (!k) return UnsupportedDType(sig, dt);
  return k;
}

// ---- Where ----------------------------------------------------------------

template <typename U>
Status RunWhere(const NdIter& it, KernelContext& ctx) {
  const uint8_t* cond = ctx.inputs[0]->data<uint8_t>();
  const U* x = static_cast<const U*>(ctx.inputs[1]->raw());
  const U* y = static_cast<const U*>(ctx.inputs[2]->raw());
  U* out = static_cast<U*>(ctx.outputs[0]->raw());
  const int64_t sc = it.inner_stride(1), sx = it.inner_stride(2), sy = it.inner_stride(3);
  ForEachRun(it, ctx.pool, kElementwiseGrain, [&](const int64_t* off, int64_t len) {
    U* o = out + off[0];
    const uint8_t* c = cond + off[1];
    const U* px = x + off[2];
    const U* py = y + off[3];
    // Both sides are loaded before selecting so the loop vectorises.
    if (sc == 1 && sx == 1 && sy == 1) {
      for (int64_t i = 0; i < len; ++i) {
        const U a = px[i], b = py[i];
        o[i] = c[i] ? a : b;
      }
    } else {
      for (int64_t i = 0; i < len; ++i) {
        const U a = px[i * sx], b = py[i * sy];
        o[i] = c[i * sc] ? a : b;
      }
    }
  });
  return Status::Ok();
}

// Where only selects, so it works on any dtype by element size.
Result<std::unique_ptr<OpKernel>> CreateWhere(const NodeSignature& sig) {
  const Shape& out = sig.outputs[0].shape;
  ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(out, {ContiguousStrides(out), BroadcastStrides(sig.inputs[0].shape, out),
                                                     BroadcastStrides(sig.inputs[1].shape, out),
                                                     BroadcastStrides(sig.inputs[2].shape, out)}));
  std::unique_ptr<OpKernel> k;
  DispatchBySize(DTypeSize(sig.inputs[1].dtype), [&](auto tag) {
    using U = decltype(tag);
    k = MakeKernel([it](KernelContext& ctx) { return RunWhere<U>(it, ctx); });
  });
  if (!k) return UnsupportedDType(sig, sig.inputs[1].dtype);
  return k;
}

}  // namespace

void AppendElementwiseBinaryKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Add", &WithF16<&CreateBinary<Bin::kAdd>>});
  table.push_back({"", "Sub", &WithF16<&CreateBinary<Bin::kSub>>});
  table.push_back({"", "Mul", &WithF16<&CreateBinary<Bin::kMul>>});
  table.push_back({"", "Div", &WithF16<&CreateBinary<Bin::kDiv>>});
  table.push_back({"", "Mod", &WithF16<&CreateMod>});
  table.push_back({"", "Pow", &WithF16<&CreatePow>});
  table.push_back({"", "PRelu", &WithF16<&CreateBinary<Bin::kPRelu>>});
  table.push_back({"", "Equal", &WithF16<&CreateBinary<Bin::kEqual>>});
  table.push_back({"", "Less", &WithF16<&CreateBinary<Bin::kLess>>});
  table.push_back({"", "LessOrEqual", &WithF16<&CreateBinary<Bin::kLessEq>>});
  table.push_back({"", "Greater", &WithF16<&CreateBinary<Bin::kGreater>>});
  table.push_back({"", "GreaterOrEqual", &WithF16<&CreateBinary<Bin::kGreaterEq>>});
  table.push_back({"", "And", &CreateBinary<Bin::kAnd>});
  table.push_back({"", "Or", &CreateBinary<Bin::kOr>});
  table.push_back({"", "Xor", &CreateBinary<Bin::kXor>});
  table.push_back({"", "Sum", &WithF16<&CreateVariadic<Bin::kAdd, false>>});
  table.push_back({"", "Mean", &WithF16<&CreateVariadic<Bin::kAdd, true>>});
  table.push_back({"", "Max", &WithF16<&CreateVariadic<Bin::kMax, false>>});
  table.push_back({"", "Min", &WithF16<&CreateVariadic<Bin::kMin, false>>});
  table.push_back({"", "Where", &CreateWhere});
}

}  // namespace itkit::cpu
