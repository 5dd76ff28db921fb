// CPU kernels of the tensor-op family, part 1: layout ops. Reshape-like ops are a
// copy (nothing when the session aliases the buffers); Transpose, Slice, Expand and
// Tile are strided copies (nd_iter.h) over the output, with a tiled path for
// transposes that swap the contiguous axis; Concat/Split copy per input/output block.
// All of them move bytes, so every dtype works.
#include <algorithm>
#include <limits>
#include <string>

#include "cpu/tensor_ops_internal.h"

namespace itkit::cpu {
namespace {

// Reshape, Flatten, Squeeze, Unsqueeze: same bytes, new shape.
Result<std::unique_ptr<OpKernel>> CreateCopy(const NodeSignature& /*sig*/) {
  return MakeKernel([](KernelContext& ctx) {
    ParallelMemcpy(ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), ctx.outputs[0]->bytes(), ctx.pool);
    return Status::Ok();
  });
}

// ---- Transpose ------------------------------------------------------------

// Transposes in square tiles over two dims: `k`, the output dim along which the
// input is contiguous, and the output's innermost dim (input stride `col_stride`).
// Every other dim is a batch dim. Walking element by element, one side would jump
// by a large stride per element.
template <typename U>
void TiledTranspose(const NdIter& it, int k, const U* in, U* out, ThreadPool* pool) {
  constexpr int64_t kTile = 32;
  const int r = it.rank;
  const int64_t rows = it.dims[k], cols = it.dims[r - 1];
  const int64_t row_out_stride = it.strides[0][k];
  const int64_t col_stride = it.strides[1][r - 1];
  int batch_dims[kMaxIterRank];
  int nb = 0;
  int64_t batches = 1;
  for (int d = 0; d < r - 1; ++d) {
    if (d == k) continue;
    batch_dims[nb++] = d;
    batches *= it.dims[d];
  }
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int64_t tasks = batches * row_tiles * col_tiles;
  ParallelFor(pool, tasks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t rem = t / (row_tiles * col_tiles);
      const int64_t tile = t % (row_tiles * col_tiles);
      int64_t out_off = 0, in_off = 0;
      for (int q = nb - 1; q >= 0; --q) {  // batch offsets, once per tile
        const int d = batch_dims[q];
        const int64_t idx = rem % it.dims[d];
        rem /= it.dims[d];
        out_off += idx * it.strides[0][d];
        in_off += idx * it.strides[1][d];
      }
      const int64_t i0 = (tile / col_tiles) * kTile, j0 = (tile % col_tiles) * kTile;
      const int64_t i1 = std::min(rows, i0 + kTile), j1 = std::min(cols, j0 + kTile);
      // Through a local tile: contiguous reads of input rows, then contiguous writes
      // of output rows. Large power-of-two strides (64 KiB between rows of a volume)
      // map every row to one cache set, so a direct strided walk thrashes L1.
      U tile_buf[kTile][kTile];
      for (int64_t j = j0; j < j1; ++j) {
        const U* src = in + in_off + j * col_stride;
        for (int64_t i = i0; i < i1; ++i) tile_buf[j - j0][i - i0] = src[i];
      }
      for (int64_t i = i0; i < i1; ++i) {
        U* dst = out + out_off + i * row_out_stride;
        for (int64_t j = j0; j < j1; ++j) dst[j] = tile_buf[j - j0][i - i0];
      }
    }
  });
}

Result<std::unique_ptr<OpKernel>> CreateTranspose(const NodeSignature& sig) {
  const Shape& in = sig.inputs[0].shape;
  const Shape& out = sig.outputs[0].shape;
  const size_t rank = in.size();
  std::vector<int64_t> perm = sig.node->attrs.GetInts("perm");
  if (perm.empty())
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  if (perm.size() != rank) return Internal(sig.node->Describe(), ": perm does not match the rank");
  const std::vector<int64_t> in_strides = ContiguousStrides(in);
  std::vector<int64_t> src(rank);
  for (size_t i = 0; i < rank; ++i) src[i] = in_strides[static_cast<size_t>(perm[i])];
  ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(out, {ContiguousStrides(out), src}));
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  // Tiles apply whenever the input's contiguous dim is not the output's innermost
  // (NCDHW <-> NDHWC, [.., H, W] -> [.., W, H], D <-> W swaps...); otherwise the
  // strided copy already reads runs of contiguous input.
  int k = -1;
  if (it.strides[1][it.rank - 1] != 1)
    for (int d = 0; d < it.rank - 1; ++d)
      if (it.strides[1][d] == 1) k = d;
  return MakeKernel([it, elem, k](KernelContext& ctx) {
    const void* src_data = ctx.inputs[0]->raw();
    void* dst_data = ctx.outputs[0]->raw();
    if (k >= 0) {
      DispatchBySize(elem, [&](auto tag) {
        using U = decltype(tag);
        TiledTranspose(it, k, static_cast<const U*>(src_data), static_cast<U*>(dst_data), ctx.pool);
      });
    } else {
      StridedCopy(it, dst_data, src_data, elem, ctx.pool, kCopyGrain);
    }
    return Status::Ok();
  });
}

// ---- Concat / Split -------------------------------------------------------

// Copies a [outer, block] region between a tensor with rows of `src_row` elements
// and one with rows of `dst_row` elements (memcpy per row, split over the pool).
void CopyBlocks(void* dst, int64_t dst_row, const void* src, int64_t src_row, int64_t outer, int64_t block,
                size_t elem, ThreadPool* pool) {
  if (outer == 0 || block == 0) return;
  auto it = MakeNdIter({outer, block}, {{dst_row, 1}, {src_row, 1}});
  if (it.ok()) StridedCopy(*it, dst, src, elem, pool, kCopyGrain);
}

struct AxisSplit {
  int64_t outer = 1, inner = 1;
};

AxisSplit SplitAt(const Shape& shape, int axis) {
  AxisSplit s;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (d < axis) s.outer *= shape[static_cast<size_t>(d)];
    if (d > axis) s.inner *= shape[static_cast<size_t>(d)];
  }
  return s;
}

Result<std::unique_ptr<OpKernel>> CreateConcat(const NodeSignature& sig) {
  const Shape& out = sig.outputs[0].shape;
  int64_t axis = sig.node->attrs.GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(out.size());
  const AxisSplit s = SplitAt(out, static_cast<int>(axis));
  const int64_t out_row = out[static_cast<size_t>(axis)] * s.inner;
  std::vector<int64_t> blocks;  // elements per outer row contributed by each input
  for (const ValueDesc& in : sig.inputs) blocks.push_back(in.shape[static_cast<size_t>(axis)] * s.inner);
  const size_t elem = DTypeSize(sig.outputs[0].dtype);
  return MakeKernel([s, out_row, blocks, elem](KernelContext& ctx) {
    char* dst = static_cast<char*>(ctx.outputs[0]->raw());
    int64_t offset = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      CopyBlocks(dst + offset * static_cast<int64_t>(elem), out_row, ctx.inputs[i]->raw(), blocks[i], s.outer,
                 blocks[i], elem, ctx.pool);
      offset += blocks[i];
    }
    return Status::Ok();
  });
}

Result<std::unique_ptr<OpKernel>> CreateSplit(const NodeSignature& sig) {
  const Shape& in = sig.inputs[0].shape;
  int64_t axis = sig.node->attrs.GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(in.size());
  const AxisSplit s = SplitAt(in, static_cast<int>(axis));
  const int64_t in_row = in[static_cast<size_t>(axis)] * s.inner;
  std::vector<int64_t> blocks;
  for (const ValueDesc& o : sig.outputs) blocks.push_back(o.shape[static_cast<size_t>(axis)] * s.inner);
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([s, in_row, blocks, elem](KernelContext& ctx) {
    const char* src = static_cast<const char*>(ctx.inputs[0]->raw());
    int64_t offset = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (i < ctx.outputs.size() && ctx.outputs[i])
        CopyBlocks(ctx.outputs[i]->raw(), blocks[i], src + offset * static_cast<int64_t>(elem), in_row, s.outer,
                   blocks[i], elem, ctx.pool);
      offset += blocks[i];
    }
    return Status::Ok();
  });
}

// ---- Slice ----------------------------------------------------------------

// The ONNX clamping of one sliced axis; mirrors runtime/shape_infer/tensor_ops.cpp.
void ResolveSlice(int64_t start, int64_t end, int64_t step, int64_t dim, int64_t* first, int64_t* count) {
  *first = 0;
  *count = 0;
  if (dim == 0) return;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    *count = end > start ? (end - start - 1) / step + 1 : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    const int64_t abs_step = step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step;
    *count = start > end ? (start - end - 1) / abs_step + 1 : 0;
  }
  *first = start;
}

// Starts/ends/axes/steps are read at run time (inputs since opset 10), so the kernel
// does not depend on the planner keeping constant tensors alive.
Result<std::unique_ptr<OpKernel>> CreateSlice(const NodeSignature& sig) {
  const std::string desc = sig.node->Describe();
  const bool from_attrs = sig.opset < 10;
  const std::vector<int64_t> attr_starts = sig.node->attrs.GetInts("starts");
  const std::vector<int64_t> attr_ends = sig.node->attrs.GetInts("ends");
  const std::vector<int64_t> attr_axes = sig.node->attrs.GetInts("axes");
  const Shape in = sig.inputs[0].shape;
  const Shape out = sig.outputs[0].shape;
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([=](KernelContext& ctx) -> Status {
    std::vector<int64_t> starts, ends, axes, steps;
    if (from_attrs) {
      starts = attr_starts;
      ends = attr_ends;
      axes = attr_axes;
    } else {
      starts = InputInts(ctx, 1);
      ends = InputInts(ctx, 2);
      axes = InputInts(ctx, 3);
      steps = InputInts(ctx, 4);
    }
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
      return InvalidArgument(desc, ": starts, ends, axes and steps must have the same length");
    const int64_t rank = static_cast<int64_t>(in.size());
    const std::vector<int64_t> in_strides = ContiguousStrides(in);
    std::vector<int64_t> src = in_strides;
    Shape got = in;
    int64_t base = 0;
    for (size_t i = 0; i < starts.size(); ++i) {
      int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (a < 0 || a >= rank || steps[i] == 0) return InvalidArgument(desc, ": invalid axis or step");
      const size_t d = static_cast<size_t>(a);
      int64_t first = 0, count = 0;
      ResolveSlice(starts[i], ends[i], steps[i], in[d], &first, &count);
      got[d] = count;
      base += first * in_strides[d];
      src[d] = in_strides[d] * steps[i];
    }
    if (got != out) return PlanMismatch(desc, out, got);
    ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(out, {ContiguousStrides(out), src}));
    StridedCopy(it, ctx.outputs[0]->raw(), static_cast<const char*>(ctx.inputs[0]->raw()) + base * static_cast<int64_t>(elem),
                elem, ctx.pool, kCopyGrain);
    return Status::Ok();
  });
}

// ---- Expand / Tile --------------------------------------------------------

Result<std::unique_ptr<OpKernel>> CreateExpand(const NodeSignature& sig) {
  const Shape& out = sig.outputs[0].shape;
  ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(out, {ContiguousStrides(out), BroadcastStrides(sig.inputs[0].shape, out)}));
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([it, elem](KernelContext& ctx) {
    StridedCopy(it, ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), elem, ctx.pool, kCopyGrain);
    return Status::Ok();
  });
}

// Output axis d of size repeats*n is walked as the pair (repeat, position): the
// input ignores the repeat (stride 0) and the output moves a whole copy per repeat.
Result<std::unique_ptr<OpKernel>> CreateTile(const NodeSignature& sig) {
  const Shape& in = sig.inputs[0].shape;
  const Shape& out = sig.outputs[0].shape;
  const std::vector<int64_t> in_strides = ContiguousStrides(in), out_strides = ContiguousStrides(out);
  std::vector<int64_t> dims, dst, src;
  for (size_t d = 0; d < in.size(); ++d) {
    const int64_t reps = in[d] == 0 ? 0 : out[d] / in[d];
    dims.insert(dims.end(), {reps, in[d]});
    dst.insert(dst.end(), {in[d] * out_strides[d], out_strides[d]});
    src.insert(src.end(), {0, in_strides[d]});
  }
  ITKIT_ASSIGN_OR_RETURN(NdIter it, MakeNdIter(dims, {dst, src}));
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return MakeKernel([it, elem](KernelContext& ctx) {
    StridedCopy(it, ctx.outputs[0]->raw(), ctx.inputs[0]->raw(), elem, ctx.pool, kCopyGrain);
    return Status::Ok();
  });
}

}  // namespace

void AppendTensorKernels(std::vector<CpuOpEntry>& table) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}) table.push_back({"", op, &CreateCopy});
  table.push_back({"", "Transpose", &CreateTranspose});
  table.push_back({"", "Concat", &CreateConcat});
  table.push_back({"", "Split", &CreateSplit});
  table.push_back({"", "Slice", &CreateSlice});
  table.push_back({"", "Expand", &CreateExpand});
  table.push_back({"", "Tile", &CreateTile});
  AppendTensorMoreKernels(table);
}

}  // namespace itkit::cpu
