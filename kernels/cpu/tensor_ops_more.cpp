// CPU kernels of the tensor-op family, part 2: Pad, Gather, ScatterND and the ops that
// generate values from shapes or attributes (Shape, Size, ConstantOfShape, Range,
// NonZero, Constant). Value-carrying inputs (pads, indices, range bounds) are read at
// run time from host memory and checked against the planned output shape.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "cpu/tensor_ops_internal.h"
#include "shape_infer/scatter_reduction.h"

namespace itkit::cpu {
namespace {

// Fills n elements of `elem` bytes with the element at `value`.
void FillElements(void* dst, int64_t n, const void* value, size_t elem, ThreadPool* pool) {
  DispatchBySize(elem, [&](auto tag) {
    using U = decltype(tag);
    U v;
    std::memcpy(&v, value, sizeof(U));
    U* out = static_cast<U*>(dst);
    ParallelFor(pool, n, kCopyGrain, [&](int64_t b, int64_t e) { std::fill(out + b, out + e, v); });
  });
}

// The bytes of `v` converted to `dtype` (an attribute value such as Pad-2's 'value').
uint64_t ScalarBits(DType dtype, double v) {
  uint64_t bits = 0;
  auto put = [&](auto x) { std::memcpy(&bits, &x, sizeof(x)); };
  switch (dtype) {
    case DType::kF32: put(static_cast<float>(v)); break;
    case DType::kF16: put(FloatToHalf(static_cast<float>(v))); break;
    case DType::kI64: put(static_cast<int64_t>(v)); break;
    case DType::kI32: put(static_cast<int32_t>(v)); break;
    case DType::kU8: put(static_cast<uint8_t>(v)); break;
    case DType::kBool: put(static_cast<uint8_t>(v != 0)); break;
    default: break;
  }
  return bits;
}

// ---- Pad ------------------------------------------------------------------

enum class PadMode { kConstant, kReflect, kEdge };

// Source index along an axis of size n for output coordinate o, or -1 for the
// constant. Reflect mirrors without repeating the edge, repeatedly if needed.
int64_t PadSource(PadMode mode, int64_t o, int64_t before, int64_t n) {
  int64_t c = o - before;
  if (c >= 0 && c < n) return c;
  switch (mode) {
    case PadMode::kConstant: return -1;
    case PadMode::kEdge: return c < 0 ? 0 : n - 1;
    case PadMode::kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      c %= period;
      if (c < 0) c += period;
      return c < n ? c : period - c;
    }
  }
  return -1;
}

template <typename U>
void RunPadRows(const Shape& out, const std::vector<std::vector<int64_t>>& maps,
                const std::vector<int64_t>& in_strides, const U* in, U* dst, U value, ThreadPool* pool) {
  const int r = static_cast<int>(out.size());
  const int64_t width = out[static_cast<size_t>(r - 1)];
  const std::vector<int64_t>& last = maps[static_cast<size_t>(r - 1)];
  // The longest stretch of the row that maps to consecutive input elements is
  // copied with memcpy; only the padded ends go element by element.
  int64_t lo = 0, hi = 0;
  for (int64_t j = 0; j < width;) {
    if (last[static_cast<size_t>(j)] < 0) {
      ++j;
      continue;
    }
    int64_t k = j + 1;
    while (k < width && last[static_cast<size_t>(k)] == last[static_cast<size_t>(k - 1)] + 1) ++k;
    if (k - j > hi - lo) {
      lo = j;
      hi = k;
    }
    j = k;
  }
  const int64_t rows = width == 0 ? 0 : ElementCount(out) / width;
  ParallelFor(pool, rows, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, width)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(static_cast<size_t>(r), 0);
    int64_t rem = b;
    for (int d = r - 2; d >= 0; --d) {
      idx[static_cast<size_t>(d)] = rem % out[static_cast<size_t>(d)];
      rem /= out[static_cast<size_t>(d)];
    }
    for (int64_t row = b; row < e; ++row) {
      int64_t src = 0;
      bool inside = true;
      for (int d = 0; d < r - 1 && inside; ++d) {
        const int64_t m = maps[static_cast<size_t>(d)][static_cast<size_t>(idx[static_cast<size_t>(d)])];
        inside = m >= 0;
        src += m * in_strides[static_cast<size_t>(d)];
      }
      U* o = dst + row * width;
      if (!inside) {
        std::fill(o, o + width, value);
      } else {
        const U* s = in + src;
        for (int64_t j = 0; j < lo; ++j) o[j] = last[static_cast<size_t>(j)] < 0 ? value : s[last[static_cast<size_t>(j)]];
        if (hi > lo) std::memcpy(o + lo, s + last[static_cast<size_t>(lo)], static_cast<size_t>(hi - lo) * sizeof(U));
        for (int64_t j = hi; j < width; ++j) o[j] = last[static_cast<size_t>(j)] < 0 ? value : s[last[static_cast<size_t>(j)]];
      }
      for (int d = r - 2; d >= 0; --d) {  // next row
        if (++idx[static_cast<size_t>(d)] < out[static_cast<size_t>(d)]) break;
        idx[static_cast<size_t>(d)] = 0;
      }
    }
  });
}

Result<std::unique_ptr<OpKernel>> CreatePad(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  const std::string mode_name = sig.node->attrs.GetString("mode", "constant");
  PadMode mode;
  if (mode_name == "constant") mode = PadMode::kConstant;
  else if (mode_name == "reflect") mode = PadMode::kReflect;
  else if (mode_name == "edge") mode = PadMode::kEdge;
  else return Unsupported(desc, ": pad mode '", mode_name, "' is not supported");
  const bool from_attrs = sig.opset < 11;
  const std::vector<int64_t> attr_pads = sig.node->attrs.GetInts("pads");
  const uint64_t attr_value = ScalarBits(sig.inputs[0].dtype, sig.node->attrs.GetFloat("value", 0.0f));
  const Shape in = sig.inputs[0].shape, out = sig.outputs[0].shape;
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([=](KernelContext& ctx) -> Status {
    const int rank = static_cast<int>(in.size());
    std::vector<int64_t> pads = from_attrs ? attr_pads : InputInts(ctx, 1);
    std::vector<int64_t> axes = from_attrs ? std::vector<int64_t>{} : InputInts(ctx, 3);
    if (axes.empty())
      for (int i = 0; i < rank; ++i) axes.push_back(i);
    if (pads.size() != 2 * axes.size()) return InvalidArgument(desc, ": pads do not match the axes");
    std::vector<int64_t> before(in.size(), 0);
    Shape got = in;
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (a < 0 || a >= rank) return InvalidArgument(desc, ": axis ", axes[i], " is out of range");
      before[static_cast<size_t>(a)] = pads[i];
      got[static_cast<size_t>(a)] = in[static_cast<size_t>(a)] + pads[i] + pads[i + axes.size()];
    }
    if (got != out) return PlanMismatch(desc, out, got);
    uint64_t value = attr_value;
    if (!from_attrs) {
      value = 0;
      if (ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->size() > 0) std::memcpy(&value, ctx.inputs[2]->raw(), elem);
    }
    if (rank == 0) {
      std::memcpy(ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), elem);
      return Status::Ok();
    }
    std::vector<std::vector<int64_t>> maps(in.size());
    for (size_t d = 0; d < in.size(); ++d) {
      maps[d].resize(static_cast<size_t>(out[d]));
      for (int64_t o = 0; o < out[d]; ++o) maps[d][static_cast<size_t>(o)] = PadSource(mode, o, before[d], in[d]);
    }
    const std::vector<int64_t> in_strides = ContiguousStrides(in);
    DispatchBySize(elem, [&](auto tag) {
      using U = decltype(tag);
      U v;
      std::memcpy(&v, &value, sizeof(U));
      RunPadRows<U>(out, maps, in_strides, static_cast<const U*>(ctx.inputs[0]->raw()),
                    static_cast<U*>(ctx.outputs[0]->raw()), v, ctx.pool);
    });
    return Status::Ok();
  });
}

// ---- Gather ---------------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateGather(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  const Shape& data = sig.inputs[0].shape;
  int64_t axis = sig.node->attrs.GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(data.size());
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < data.size(); ++d) {
    if (static_cast<int64_t>(d) < axis) outer *= data[d];
    if (static_cast<int64_t>(d) > axis) inner *= data[d];
  }
  const int64_t dim = data[static_cast<size_t>(axis)];
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([=](KernelContext& ctx) -> Status {
    std::vector<int64_t> idx = ctx.inputs[1]->ToInt64Vector();
    for (int64_t& i : idx) {
      if (i < -dim || i >= dim) return InvalidArgument(desc, ": index ", i, " is out of range for axis ", axis, " of size ", dim);
      if (i < 0) i += dim;
    }
    const int64_t m = static_cast<int64_t>(idx.size());
    const char* src = static_cast<const char*>(ctx.inputs[0]->raw());
    char* dst = static_cast<char*>(ctx.outputs[0]->raw());
    const size_t row_bytes = static_cast<size_t>(inner) * elem;
    ParallelFor(ctx.pool, outer * m, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(1, inner)),
                [&](int64_t b, int64_t e) {
                  for (int64_t row = b; row < e; ++row) {
                    const int64_t o = row / m, j = row % m;
                    std::memcpy(dst + static_cast<size_t>(row) * row_bytes,
                                src + static_cast<size_t>(o * dim + idx[static_cast<size_t>(j)]) * row_bytes, row_bytes);
                  }
                });
    return Status::Ok();
  });
}

// ---- ScatterND -------------------------------------------------------------

using shape_rules::ScatterReduction;

template <typename T>
void CombineRow(ScatterReduction r, void* dst_bytes, const void* src_bytes, int64_t n) {
  T* dst = static_cast<T*>(dst_bytes);
  const T* src = static_cast<const T*>(src_bytes);
  for (int64_t j = 0; j < n; ++j) {
    switch (r) {
      case ScatterReduction::kAdd: dst[j] += src[j]; break;
      case ScatterReduction::kMul: dst[j] *= src[j]; break;
      case ScatterReduction::kMax: dst[j] = std::max(dst[j], src[j]); break;
      case ScatterReduction::kMin: dst[j] = std::min(dst[j], src[j]); break;
      case ScatterReduction::kNone: dst[j] = src[j]; break;
    }
  }
}

// out = data; then each index tuple (indices' last axis, k entries, negative counts from
// the end) selects a slice of data's trailing rank - k axes, which updates' matching row
// replaces (or is combined into, `reduction`). Tuples apply in order: with reduction
// none a repeated index keeps the last row (ONNX leaves that case undefined).
Result<std::unique_ptr<OpKernel>> CreateScatterND(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  ITKIT_ASSIGN_OR_RETURN(const ScatterReduction reduce, shape_rules::ScatterReductionOf(*sig.node));
  const DType dtype = sig.inputs[0].dtype;
  if (reduce != ScatterReduction::kNone && dtype != DType::kF32 && dtype != DType::kI64 && dtype != DType::kI32)
    return Unsupported(desc, ": reduction '", sig.node->attrs.GetString("reduction", ""), "' on ", DTypeName(dtype),
                       " is not supported");
  const Shape data = sig.inputs[0].shape;
  const Shape idx_shape = sig.inputs[1].shape;
  if (idx_shape.empty() || idx_shape.back() > static_cast<int64_t>(data.size()))
    return InvalidArgument(desc, ": indices of shape ", ShapeToString(idx_shape), " for data of rank ", data.size());
  const size_t k = static_cast<size_t>(idx_shape.back());
  int64_t tuples = 1, row = 1;  // index tuples; elements per tuple
  for (size_t d = 0; d + 1 < idx_shape.size(); ++d) tuples *= idx_shape[d];
  for (size_t d = k; d < data.size(); ++d) row *= data[d];
  const size_t elem = DTypeSize(dtype);
  return MakeKernel([=](KernelContext& ctx) -> Status {
    char* out = static_cast<char*>(ctx.outputs[0]->raw());
    if (ctx.outputs[0]->raw() != ctx.inputs[0]->raw()) std::memcpy(out, ctx.inputs[0]->raw(), ctx.inputs[0]->bytes());
    const std::vector<int64_t> idx = ctx.inputs[1]->ToInt64Vector();
    const char* upd = static_cast<const char*>(ctx.inputs[2]->raw());
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t offset = 0;
      for (size_t d = 0; d < k; ++d) {
        int64_t i = idx[static_cast<size_t>(t) * k + d];
        if (i < -data[d] || i >= data[d])
          return InvalidArgument(desc, ": index ", i, " is out of range for axis ", d, " of size ", data[d]);
        if (i < 0) i += data[d];
        offset = offset * data[d] + i;
      }
      char* dst = out + static_cast<size_t>(offset * row) * elem;
      const char* src = upd + static_cast<size_t>(t * row) * elem;
      switch (reduce == ScatterReduction::kNone ? DType::kUndefined : dtype) {
        case DType::kF32: CombineRow<float>(reduce, dst, src, row); break;
        case DType::kI64: CombineRow<int64_t>(reduce, dst, src, row); break;
        case DType::kI32: CombineRow<int32_t>(reduce, dst, src, row); break;
        default: std::memcpy(dst, src, static_cast<size_t>(row) * elem); break;
      }
    }
    return Status::Ok();
  });
}

// ---- generators -----------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateShape(const NodeSignature& sig) {
  const Shape in = sig.inputs[0].shape;
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t start = sig.node->attrs.GetInt("start", 0);
  if (start < 0) start += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  return MakeKernel([in, start](KernelContext& ctx) {
    int64_t* out = ctx.outputs[0]->data<int64_t>();
    for (int64_t i = 0; i < ctx.outputs[0]->size(); ++i) out[i] = in[static_cast<size_t>(start + i)];
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateSize(const NodeSignature& /*sig*/) {
  return MakeKernel([](KernelContext& ctx) {
    ctx.outputs[0]->data<int64_t>()[0] = ctx.inputs[0]->size();
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateConstantOfShape(const NodeSignature& sig) {
  uint64_t value = 0;
  const size_t elem = DTypeSize(sig.outputs[0].dtype);
  if (const Attribute* v = sig.node->attrs.Find("value"); v && v->t.defined() && v->t.size() == 1)
    std::memcpy(&value, v->t.raw(), elem);
  return MakeKernel([value, elem](KernelContext& ctx) {
    FillElements(ctx.outputs[0]->raw(), ctx.outputs[0]->size(), &value, elem, ctx.pool);
    return Status::Ok();
  });
}

// out[i] = start + i * delta, as the ONNX definition (no accumulated rounding).
template <typename T>
Status RunRange(KernelContext& ctx) {
  T* out = ctx.outputs[0]->data<T>();
  const int64_t n = ctx.outputs[0]->size();
  if constexpr (std::is_floating_point_v<T>) {
    const double start = ctx.inputs[0]->GetAsDouble(0), delta = ctx.inputs[2]->GetAsDouble(0);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(start + static_cast<double>(i) * delta);
  } else {
    const int64_t start = ctx.inputs[0]->GetAsInt64(0), delta = ctx.inputs[2]->GetAsInt64(0);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(start + i * delta);
  }
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreateRange(const NodeSignature& sig) {
  switch (sig.outputs[0].dtype) {
    case DType::kF32: return MakeKernel([](KernelContext& ctx) { return RunRange<float>(ctx); });
    case DType::kI64: return MakeKernel([](KernelContext& ctx) { return RunRange<int64_t>(ctx); });
    case DType::kI32: return MakeKernel([](KernelContext& ctx) { return RunRange<int32_t>(ctx); });
    default:
      return Unsupported(sig.node->Describe(), ": dtype ", DTypeName(sig.outputs[0].dtype), " is not supported");
  }
}

Result<std::unique_ptr<OpKernel>> CreateNonZero(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  return MakeKernel([desc](KernelContext& ctx) -> Status {
    const Tensor& in = *ctx.inputs[0];
    const int64_t n = in.size();
    const Shape& shape = in.shape();
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += in.GetAsDouble(i) != 0.0;
    const Shape planned = ctx.outputs[0]->shape();
    if (planned != Shape{static_cast<int64_t>(shape.size()), count})
      return PlanMismatch(desc, planned, {static_cast<int64_t>(shape.size()), count});
    int64_t* out = ctx.outputs[0]->data<int64_t>();
    std::vector<int64_t> idx(shape.size(), 0);
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (in.GetAsDouble(i) != 0.0) {
        for (size_t d = 0; d < shape.size(); ++d) out[static_cast<int64_t>(d) * count + k] = idx[d];
        ++k;
      }
      for (size_t d = shape.size(); d-- > 0;) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateConstant(const NodeSignature& sig) {
  const Attributes& a = sig.node->attrs;
  std::vector<uint8_t> bytes;
  auto take = [&](const void* p, size_t n) {
    bytes.assign(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  };
  if (const Attribute* v = a.Find("value"); v && v->t.defined()) {
    take(v->t.raw(), v->t.bytes());
  } else if (const Attribute* f = a.Find("value_float")) {
    take(&f->f, sizeof(float));
  } else if (const Attribute* i = a.Find("value_int")) {
    take(&i->i, sizeof(int64_t));
  } else if (const Attribute* fs = a.Find("value_floats")) {
    take(fs->floats.data(), fs->floats.size() * sizeof(float));
  } else if (const Attribute* is = a.Find("value_ints")) {
    take(is->ints.data(), is->ints.size() * sizeof(int64_t));
  } else {
    return Unsupported(sig.node->Describe(), ": unsupported Constant attribute");
  }
  return MakeKernel([bytes](KernelContext& ctx) -> Status {
    if (ctx.outputs[0]->bytes() != bytes.size()) return Internal("Constant: planned size mismatch");
    if (!bytes.empty()) std::memcpy(ctx.outputs[0]->raw(), bytes.data(), bytes.size());
    return Status::Ok();
  });
}

}  // namespace

void AppendTensorMoreKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Pad", &CreatePad});
  table.push_back({"", "Gather", &CreateGather});
  table.push_back({"", "ScatterND", &CreateScatterND});
  table.push_back({"", "Shape", &CreateShape});
  table.push_back({"", "Size", &CreateSize});
  table.push_back({"", "ConstantOfShape", &CreateConstantOfShape});
  table.push_back({"", "Range", &CreateRange});
  table.push_back({"", "NonZero", &CreateNonZero});
  table.push_back({"", "Constant", &CreateConstant});
}

}  // namespace itkit::cpu
