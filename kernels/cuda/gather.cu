// Gather with indices known at plan time, on float data: a transformer's attention
// takes q, k and v out of one projection with Gather(qkv, 0 / 1 / 2) (UNETR, SwinUNETR),
// which otherwise sends the activations to the CPU and back three times per block.
// Indices computed at run time, and integer data (shape arithmetic, which its consumers
// need on the host), stay on the CPU.
//
// out[o, j, i] = data[o, idx[j], i] with o over the axes before `axis`, j over the
// indices (any shape, flattened), i over the axes after it. The indices are checked
// and made non-negative at plan time and uploaded once; one index is a strided copy.
#include <vector>

#include "cuda/common.cuh"

namespace itkit::cuda {
namespace {

template <typename E>
__global__ void GatherKernel(const E* __restrict__ data, const int64_t* __restrict__ indices, E* __restrict__ out,
                             int64_t n, int64_t inner, int64_t num_indices, int64_t axis_len) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % inner, t = e / inner;
    const int64_t j = t % num_indices, o = t / num_indices;
    out[e] = data[(o * axis_len + indices[j]) * inner + i];
  }
}

struct GatherGeometry {
  int64_t outer = 1, axis_len = 1, inner = 1;
  std::vector<int64_t> indices;  // non-negative, < axis_len
};

Result<GatherGeometry> GeometryOf(const NodeSignature& sig) {
  const Shape& data = sig.inputs[0].shape;
  const int rank = static_cast<int>(data.size());
  int64_t axis = sig.node->attrs.GetInt("axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return InvalidArgument(sig.node->Describe(), ": axis ", sig.node->attrs.GetInt("axis", 0), " for rank ", rank);
  GatherGeometry g;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t len = data[static_cast<size_t>(d)];
    if (d < axis) g.outer *= len;
    else if (d == axis) g.axis_len = len;
    else g.inner *= len;
  }
  const Tensor& idx = *sig.inputs[1].constant;
  g.indices.reserve(static_cast<size_t>(idx.size()));
  for (int64_t k = 0; k < idx.size(); ++k) {
    int64_t v = idx.dtype() == DType::kI64 ? idx.data<int64_t>()[k] : idx.data<int32_t>()[k];
    if (v < -g.axis_len || v >= g.axis_len)
      return InvalidArgument(sig.node->Describe(), ": index ", v, " out of range for axis length ", g.axis_len);
    g.indices.push_back(v < 0 ? v + g.axis_len : v);
  }
  return g;
}

bool GatherSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  if (sig.inputs.size() != 2) return Reject(reason, "needs data and indices");
  if (!IsF32OrF16(sig.inputs[0].dtype)) return Reject(reason, "data dtype ", DTypeName(sig.inputs[0].dtype));
  const ValueDesc& idx = sig.inputs[1];
  if (!idx.constant) return Reject(reason, "indices computed at run time");
  if (idx.constant->dtype() != DType::kI64 && idx.constant->dtype() != DType::kI32)
    return Reject(reason, "indices dtype ", DTypeName(idx.constant->dtype()));
  for (const ValueDesc& v : sig.inputs)
    if (v.channels_last) return Reject(reason, "channels-last");
  if (sig.outputs.empty() || sig.outputs[0].channels_last) return Reject(reason, "no output, or channels-last");
  if (ElementCount(sig.inputs[0].shape) > kMaxCudnnElements || ElementCount(sig.outputs[0].shape) > kMaxCudnnElements)
    return Reject(reason, "more than 2^31 elements");
  auto g = GeometryOf(sig);
  if (!g.ok()) return Reject(reason, g.status().message());
  if (g->indices.empty()) return Reject(reason, "no indices");
  return true;
}

// Keeps its own device copy of the indices, so the planner neither uploads nor passes
// the indices input.
class GatherKernelOp final : public OpKernel {
 public:
  GatherKernelOp(std::shared_ptr<CudaContext> ctx, GatherGeometry g, DeviceBuffer indices, size_t elem)
      : ctx_(std::move(ctx)), g_(std::move(g)), indices_(std::move(indices)), elem_(elem) {}
  bool reads_input_at_run(size_t input) const override { return input != 1; }

  Status Run(KernelContext& kc) override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    const int64_t num_indices = static_cast<int64_t>(g_.indices.size());
    const int64_t n = g_.outer * num_indices * g_.inner;
    if (n == 0) return Status::Ok();
    const size_t row_bytes = static_cast<size_t>(g_.inner) * elem_;
    const size_t src_pitch = static_cast<size_t>(g_.axis_len) * row_bytes;
    if (num_indices == 1 && src_pitch <= (size_t{1} << 30)) {
      // One index (attention's q/k/v): `outer` rows of `inner` elements, one strided copy.
      const auto* src =
          static_cast<const uint8_t*>(kc.inputs[0]->raw()) + static_cast<size_t>(g_.indices[0]) * row_bytes;
      ITKIT_CUDA_CHECK(cudaMemcpy2DAsync(kc.outputs[0]->raw(), row_bytes, src, src_pitch, row_bytes,
                                         static_cast<size_t>(g_.outer), cudaMemcpyDeviceToDevice, ctx_->stream));
      return Status::Ok();
    }
    const auto* idx = static_cast<const int64_t*>(indices_.data);
    const unsigned grid = GridFor(n, *ctx_);
    if (elem_ == 2) {
      GatherKernel<uint16_t><<<grid, kThreads, 0, ctx_->stream>>>(static_cast<const uint16_t*>(kc.inputs[0]->raw()),
                                                                  idx, static_cast<uint16_t*>(kc.outputs[0]->raw()),
                                                                  n, g_.inner, num_indices, g_.axis_len);
    } else {
      GatherKernel<uint32_t><<<grid, kThreads, 0, ctx_->stream>>>(static_cast<const uint32_t*>(kc.inputs[0]->raw()),
                                                                  idx, static_cast<uint32_t*>(kc.outputs[0]->raw()),
                                                                  n, g_.inner, num_indices, g_.axis_len);
    }
    ITKIT_CUDA_CHECK_LAUNCH("GatherKernel");
    return Status::Ok();
  }

 private:
  std::shared_ptr<CudaContext> ctx_;
  GatherGeometry g_;
  DeviceBuffer indices_;
  size_t elem_;
};

Result<std::unique_ptr<OpKernel>> CreateGather(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(GatherGeometry g, GeometryOf(sig));
  if (g.indices.empty()) return Unsupported(sig.node->Describe(), ": no indices");
  const size_t index_bytes = g.indices.size() * sizeof(int64_t);
  ITKIT_RETURN_IF_ERROR(ctx->Activate());
  ITKIT_ASSIGN_OR_RETURN(DeviceBuffer buffer, ctx->Allocate(index_bytes));
  ITKIT_RETURN_IF_ERROR(ctx->Upload(buffer.data, g.indices.data(), index_bytes));
  const size_t elem = DTypeSize(sig.inputs[0].dtype);
  return std::unique_ptr<OpKernel>(std::make_unique<GatherKernelOp>(ctx, std::move(g), std::move(buffer), elem));
}

}  // namespace

void AppendGatherOps(std::vector<CudaOpEntry>& table) { table.push_back({"", "Gather", GatherSupports, CreateGather}); }

}  // namespace itkit::cuda
