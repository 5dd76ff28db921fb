// Data movement on the GPU, so U-Net skip connections and reshapes do not bounce
// through the host: Reshape/Flatten/Squeeze/Unsqueeze (a copy: values are separate
// buffers in the plan), Transpose, Slice, Expand (one strided-copy kernel by element
// size, any dtype), Concat (a vectorised row copy) and constant-mode Pad (f32/f16).
#include <algorithm>

#include "cuda/strided.cuh"
#include "itkit/shape_inference.h"

namespace itkit::cuda {
namespace {

// dst[off0(i) + dst_base] = src[off1(i) + src_base] over the plan's iteration space.
template <typename E>
__global__ void StridedCopyKernel(E* __restrict__ dst, const E* __restrict__ src, int64_t n, StridedArgs<2> args,
                                  int64_t dst_base, int64_t src_base) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[2];
    DecodeOffsets(args, i, off);
    dst[dst_base + off[0]] = src[src_base + off[1]];
  }
}

Status LaunchStridedCopy(const CudaContext& ctx, void* dst, const void* src, size_t elem_size, int64_t n,
                         const StridedArgs<2>& args, int64_t dst_base, int64_t src_base) {
  if (n == 0) return Status::Ok();
  const unsigned grid = GridFor(n, ctx);
  switch (elem_size) {
    case 1:
      StridedCopyKernel<uint8_t><<<grid, kThreads, 0, ctx.stream>>>(static_cast<uint8_t*>(dst),
                                                                    static_cast<const uint8_t*>(src), n, args, dst_base,
                                                                    src_base);
      break;
    case 2:
      StridedCopyKernel<uint16_t><<<grid, kThreads, 0, ctx.stream>>>(static_cast<uint16_t*>(dst),
                                                                     static_cast<const uint16_t*>(src), n, args,
                                                                     dst_base, src_base);
      break;
    case 4:
      StridedCopyKernel<uint32_t><<<grid, kThreads, 0, ctx.stream>>>(static_cast<uint32_t*>(dst),
                                                                     static_cast<const uint32_t*>(src), n, args,
                                                                     dst_base, src_base);
      break;
    case 8:
      StridedCopyKernel<uint64_t><<<grid, kThreads, 0, ctx.stream>>>(static_cast<uint64_t*>(dst),
                                                                     static_cast<const uint64_t*>(src), n, args,
                                                                     dst_base, src_base);
      break;
    default: return Internal("strided copy of ", elem_size, "-byte elements");
  }
  ITKIT_CUDA_CHECK_LAUNCH("StridedCopyKernel");
  return Status::Ok();
}

// A kernel that runs one precomputed strided copy (input 0 -> output 0).
Result<std::unique_ptr<OpKernel>> MakeStridedCopy(const std::shared_ptr<CudaContext>& ctx, StridedPlan plan,
                                                  size_t elem_size, int64_t src_base) {
  int64_t n = 1;
  for (int64_t d : plan.dims) n *= d;
  plan = Collapse(std::move(plan));
  ITKIT_ASSIGN_OR_RETURN(StridedArgs<2> args, ToArgs<2>(plan));
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    return LaunchStridedCopy(*c, kc.outputs[0]->raw(), kc.inputs[0]->raw(), elem_size, n, args, 0, src_base);
  });
}

bool KnownElementSize(DType t) {
  const size_t s = DTypeSize(t);
  return t != DType::kUndefined && (s == 1 || s == 2 || s == 4 || s == 8);
}

// ---- Reshape / Flatten / Squeeze / Unsqueeze: same bytes, new shape --------------------

bool ReshapeSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.empty() || sig.inputs[0].dtype != sig.outputs[0].dtype) return Reject(reason, "dtype change");
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateReshape(const NodeSignature&, const std::shared_ptr<CudaContext>& ctx) {
  return MakeKernel(ctx, [c = ctx.get()](KernelContext& kc) -> Status {
    const size_t bytes = kc.outputs[0]->bytes();
    if (bytes != kc.inputs[0]->bytes()) return Internal("reshape changes the byte count");
    if (bytes == 0 || kc.outputs[0]->raw() == kc.inputs[0]->raw()) return Status::Ok();
    ITKIT_CUDA_CHECK(cudaMemcpyAsync(kc.outputs[0]->raw(), kc.inputs[0]->raw(), bytes, cudaMemcpyDeviceToDevice,
                                     c->stream));
    return Status::Ok();
  });
}

// ---- Transpose ----------------------------------------------------------------------

bool TransposeSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!KnownElementSize(sig.inputs[0].dtype)) return Reject(reason, "dtype");
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateTranspose(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& in = sig.inputs[0].shape;
  const int rank = static_cast<int>(in.size());
  std::vector<int64_t> perm = sig.node->attrs.GetInts("perm");
  if (perm.empty())
    for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
  if (static_cast<int>(perm.size()) != rank) return InvalidArgument("perm has ", perm.size(), " entries for rank ", rank);
  const std::vector<int64_t> in_strides = ContiguousStrides(in);
  StridedPlan plan;
  plan.dims = sig.outputs[0].shape;
  plan.strides = {ContiguousStrides(plan.dims), std::vector<int64_t>(static_cast<size_t>(rank))};
  for (int d = 0; d < rank; ++d) {
    if (perm[d] < 0 || perm[d] >= rank) return InvalidArgument("perm entry ", perm[d], " out of range");
    plan.strides[1][static_cast<size_t>(d)] = in_strides[static_cast<size_t>(perm[d])];
  }
  return MakeStridedCopy(ctx, std::move(plan), DTypeSize(sig.inputs[0].dtype), 0);
}

// ---- Expand -------------------------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateExpand(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  StridedPlan plan;
  plan.dims = sig.outputs[0].shape;
  plan.strides = {ContiguousStrides(plan.dims), BroadcastStrides(sig.inputs[0].shape, plan.dims)};
  return MakeStridedCopy(ctx, std::move(plan), DTypeSize(sig.inputs[0].dtype), 0);
}

// ---- Slice --------------------------------------------------------------------------

// Constant list input `i` (opset >= 10) or attribute `attr` (opset < 10).
Result<std::vector<int64_t>> SliceList(const NodeSignature& sig, size_t i, const char* attr) {
  if (sig.opset < 10) return sig.node->attrs.GetInts(attr);
  if (i >= sig.inputs.size() || sig.inputs[i].dtype == DType::kUndefined) return std::vector<int64_t>{};
  if (!sig.inputs[i].constant) return Unsupported("Slice ", attr, " are not constant");
  return sig.inputs[i].constant->ToInt64Vector();
}

struct SliceAxes {
  std::vector<int64_t> start, step;  // per axis of the input
};

Result<SliceAxes> ResolveSlice(const NodeSignature& sig) {
  const Shape& in = sig.inputs[0].shape;
  const int64_t rank = static_cast<int64_t>(in.size());
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> starts, SliceList(sig, 1, "starts"));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> ends, SliceList(sig, 2, "ends"));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> axes, SliceList(sig, 3, "axes"));
  ITKIT_ASSIGN_OR_RETURN(std::vector<int64_t> steps, SliceList(sig, 4, "steps"));
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return InvalidArgument("Slice starts/ends/axes/steps differ in length");
  SliceAxes s;
  s.start.assign(static_cast<size_t>(rank), 0);
  s.step.assign(static_cast<size_t>(rank), 1);
  for (size_t k = 0; k < starts.size(); ++k) {
    int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
    if (axis < 0 || axis >= rank) return InvalidArgument("Slice axis ", axes[k], " out of range");
    const int64_t dim = in[static_cast<size_t>(axis)], step = steps[k];
    if (step == 0) return InvalidArgument("Slice step 0");
    int64_t start = starts[k] < 0 ? starts[k] + dim : starts[k];
    // ONNX clamps start to [0, dim] for positive steps and [0, dim - 1] for negative ones.
    start = step > 0 ? std::clamp<int64_t>(start, 0, dim) : std::clamp<int64_t>(start, 0, dim - 1);
    s.start[static_cast<size_t>(axis)] = start;
    s.step[static_cast<size_t>(axis)] = step;
  }
  return s;
}

bool SliceSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!KnownElementSize(sig.inputs[0].dtype)) return Reject(reason, "dtype");
  auto s = ResolveSlice(sig);
  if (!s.ok()) return Reject(reason, s.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateSlice(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(SliceAxes s, ResolveSlice(sig));
  const std::vector<int64_t> in_strides = ContiguousStrides(sig.inputs[0].shape);
  StridedPlan plan;
  plan.dims = sig.outputs[0].shape;
  plan.strides = {ContiguousStrides(plan.dims), {}};
  int64_t base = 0;
  for (size_t d = 0; d < plan.dims.size(); ++d) {
    base += s.start[d] * in_strides[d];
    plan.strides[1].push_back(s.step[d] * in_strides[d]);
  }
  return MakeStridedCopy(ctx, std::move(plan), DTypeSize(sig.inputs[0].dtype), base);
}

// ---- Concat -------------------------------------------------------------------------

bool ConcatSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  for (const ValueDesc& d : sig.inputs)
    if (d.dtype != sig.outputs[0].dtype || !KnownElementSize(d.dtype)) return Reject(reason, "dtype");
  return !sig.inputs.empty();
}

// Concat of contiguous tensors is a row copy: for each index before the axis, each
// input's contiguous block (its extent on the axis times everything after it) lands at
// its offset in the output's block. Rows are long for NCDHW (whole samples) and short
// for channels-last values joined on C (one voxel's channels, 64 bytes at 32 f16
// channels), so the copy moves the widest unit that every row, offset and pointer is
// aligned to (16 bytes when it can) and indexes in 32 bits when the sizes allow.
template <typename V, typename I>
__global__ void RowCopyKernel(V* __restrict__ dst, const V* __restrict__ src, I rows, I in_row, I out_row, I offset) {
  const I n = rows * in_row;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = i / in_row;
    dst[r * out_row + offset + (i - r * in_row)] = src[i];
  }
}

template <typename V>
Status LaunchRowCopy(const CudaContext& ctx, void* dst, const void* src, int64_t rows, int64_t in_row_bytes,
                     int64_t out_row_bytes, int64_t offset_bytes) {
  constexpr int64_t v = sizeof(V);
  const int64_t in_row = in_row_bytes / v, out_row = out_row_bytes / v, offset = offset_bytes / v;
  const int64_t n = rows * in_row;
  const unsigned grid = GridFor(n, ctx);
  if (rows * out_row < (int64_t{1} << 31)) {
    RowCopyKernel<V, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
        static_cast<V*>(dst), static_cast<const V*>(src), static_cast<uint32_t>(rows), static_cast<uint32_t>(in_row),
        static_cast<uint32_t>(out_row), static_cast<uint32_t>(offset));
  } else {
    RowCopyKernel<V, uint64_t><<<grid, kThreads, 0, ctx.stream>>>(
        static_cast<V*>(dst), static_cast<const V*>(src), static_cast<uint64_t>(rows), static_cast<uint64_t>(in_row),
        static_cast<uint64_t>(out_row), static_cast<uint64_t>(offset));
  }
  ITKIT_CUDA_CHECK_LAUNCH("RowCopyKernel");
  return Status::Ok();
}

Status RowCopy(const CudaContext& ctx, void* dst, const void* src, int64_t rows, int64_t in_row_bytes,
               int64_t out_row_bytes, int64_t offset_bytes) {
  if (rows == 0 || in_row_bytes == 0) return Status::Ok();
  const uint64_t all = static_cast<uint64_t>(in_row_bytes | out_row_bytes | offset_bytes) |
                       reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src);
  if (all % 16 == 0) return LaunchRowCopy<uint4>(ctx, dst, src, rows, in_row_bytes, out_row_bytes, offset_bytes);
  if (all % 8 == 0) return LaunchRowCopy<uint2>(ctx, dst, src, rows, in_row_bytes, out_row_bytes, offset_bytes);
  if (all % 4 == 0) return LaunchRowCopy<uint32_t>(ctx, dst, src, rows, in_row_bytes, out_row_bytes, offset_bytes);
  if (all % 2 == 0) return LaunchRowCopy<uint16_t>(ctx, dst, src, rows, in_row_bytes, out_row_bytes, offset_bytes);
  return LaunchRowCopy<uint8_t>(ctx, dst, src, rows, in_row_bytes, out_row_bytes, offset_bytes);
}

Result<std::unique_ptr<OpKernel>> CreateConcat(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  const Shape& out = sig.outputs[0].shape;
  ITKIT_ASSIGN_OR_RETURN(int axis, NormalizeAxis(sig.node->attrs.GetInt("axis", 0), static_cast<int>(out.size()),
                                                 *sig.node));
  const int64_t elem = static_cast<int64_t>(DTypeSize(sig.outputs[0].dtype));
  int64_t rows = 1, inner = 1;
  for (int d = 0; d < axis; ++d) rows *= out[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(axis) + 1; d < out.size(); ++d) inner *= out[d];
  struct Part {
    int64_t row_bytes, offset_bytes;
  };
  std::vector<Part> parts;
  int64_t offset = 0;
  for (const ValueDesc& in : sig.inputs) {
    const int64_t extent = in.shape[static_cast<size_t>(axis)];
    parts.push_back({extent * inner * elem, offset * inner * elem});
    offset += extent;
  }
  const int64_t out_row_bytes = out[static_cast<size_t>(axis)] * inner * elem;
  return MakeKernel(ctx, [parts, rows, out_row_bytes, c = ctx.get()](KernelContext& kc) -> Status {
    for (size_t i = 0; i < parts.size(); ++i)
      ITKIT_RETURN_IF_ERROR(RowCopy(*c, kc.outputs[0]->raw(), kc.inputs[i]->raw(), rows, parts[i].row_bytes,
                                    out_row_bytes, parts[i].offset_bytes));
    return Status::Ok();
  });
}

// ---- Pad (constant) ------------------------------------------------------------------

template <typename T>
__global__ void PadKernel(const T* __restrict__ in, T* __restrict__ out, int64_t n, Dims out_dims, Dims in_dims,
                          Dims pad_begin, float value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rem = i, src = 0, src_stride = 1;
    bool inside = true;
    for (int d = out_dims.rank - 1; d >= 0; --d) {
      const int64_t o = rem % out_dims.d[d];
      rem /= out_dims.d[d];
      const int64_t s = o - pad_begin.d[d];  // negative pads crop
      inside = inside && s >= 0 && s < in_dims.d[d];
      src += s * src_stride;
      src_stride *= in_dims.d[d];
    }
    out[i] = inside ? in[src] : FromF<T>(value);
  }
}

struct PadParams {
  std::vector<int64_t> begin;
  float value = 0.0f;
};

Result<PadParams> GetPad(const NodeSignature& sig) {
  const Node& node = *sig.node;
  if (node.attrs.GetString("mode", "constant") != "constant") return Unsupported("Pad mode ", node.attrs.GetString("mode", ""));
  const size_t rank = sig.inputs[0].shape.size();
  std::vector<int64_t> pads;
  PadParams p;
  if (sig.opset < 11) {
    pads = node.attrs.GetInts("pads");
    p.value = node.attrs.GetFloat("value", 0.0f);
  } else {
    if (sig.inputs.size() < 2 || !sig.inputs[1].constant) return Unsupported("Pad pads are not constant");
    pads = sig.inputs[1].constant->ToInt64Vector();
    if (sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined) {
      if (!sig.inputs[2].constant) return Unsupported("Pad constant_value is not constant");
      if (sig.inputs[2].constant->size() > 0) p.value = static_cast<float>(sig.inputs[2].constant->GetAsDouble(0));
    }
    if (sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined) return Unsupported("Pad axes input");
  }
  if (pads.size() != 2 * rank) return InvalidArgument("Pad has ", pads.size(), " pads for rank ", rank);
  p.begin.assign(pads.begin(), pads.begin() + static_cast<long>(rank));
  return p;
}

bool PadSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "dtype ", DTypeName(sig.inputs[0].dtype));
  auto p = GetPad(sig);
  if (!p.ok()) return Reject(reason, p.status().message());
  return true;
}

Result<std::unique_ptr<OpKernel>> CreatePad(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(PadParams p, GetPad(sig));
  Dims out_dims, in_dims, begin;
  const Shape& in = sig.inputs[0].shape;
  const Shape& out = sig.outputs[0].shape;
  out_dims.rank = in_dims.rank = begin.rank = static_cast<int>(in.size());
  for (size_t d = 0; d < in.size(); ++d) {
    out_dims.d[d] = out[d];
    in_dims.d[d] = in[d];
    begin.d[d] = p.begin[d];
  }
  const int64_t n = ElementCount(out);
  const DType dtype = sig.inputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      PadKernel<T><<<GridFor(n, *c), kThreads, 0, c->stream>>>(kc.inputs[0]->data<T>(), kc.outputs[0]->data<T>(), n,
                                                               out_dims, in_dims, begin, p.value);
      ITKIT_CUDA_CHECK_LAUNCH("PadKernel");
      return Status::Ok();
    });
  });
}

bool AnyKnownDType(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (!KnownElementSize(sig.inputs[0].dtype)) return Reject(reason, "dtype");
  return true;
}

}  // namespace

void AppendTensorOps(std::vector<CudaOpEntry>& table) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
    table.push_back({"", op, ReshapeSupports, CreateReshape});
  table.push_back({"", "Transpose", TransposeSupports, CreateTranspose});
  table.push_back({"", "Expand", AnyKnownDType, CreateExpand});
  table.push_back({"", "Slice", SliceSupports, CreateSlice});
  table.push_back({"", "Concat", ConcatSupports, CreateConcat});
  table.push_back({"", "Pad", PadSupports, CreatePad});
}

}  // namespace itkit::cuda
