// CPU kernels of the conv family: parameter parsing, the choice between the oneDNN
// path and the reference loops, and the table entries.
#include <string>

#include "shape_infer/window_geometry.h"
#include "cpu/align.h"
#include "cpu/conv_kernels.h"
#include "cpu/cpu_ops.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

double ConvParams::Macs() const {
  // Conv: every output voxel sums kernel taps x input channels of its group.
  // ConvTranspose: every input voxel scatters kernel taps x output channels of its group.
  const double k = static_cast<double>(kernel_size());
  if (transpose) return static_cast<double>(batch) * in_spatial() * in_channels * k * (out_channels / group);
  return static_cast<double>(batch) * out_spatial() * out_channels * k * (in_channels / group);
}

Result<ConvParams> MakeConvParams(const NodeSignature& sig, bool transpose) {
  const Node& node = *sig.node;
  if (sig.inputs.size() < 2 || sig.outputs.empty()) return InvalidArgument(node.Describe(), ": needs X and W");
  for (size_t i = 0; i < sig.inputs.size() && i < 3; ++i) {
    const DType dt = sig.inputs[i].dtype;
    if (dt == DType::kUndefined) continue;
    if (dt != DType::kF32)
      return Unsupported(node.Describe(), ": ", DTypeName(dt), " convolution is not supported on the CPU (f32 only)");
  }
  const Shape& x = sig.inputs[0].shape;
  const Shape& w = sig.inputs[1].shape;
  if (x.size() < 3 || w.size() != x.size())
    return InvalidArgument(node.Describe(), ": X ", ShapeToString(x), " and W ", ShapeToString(w), " ranks");
  if (x.size() > 5) return Unsupported(node.Describe(), ": convolutions with more than 3 spatial axes");
  const std::vector<int64_t> kernel(w.begin() + 2, w.end());
  ITKIT_ASSIGN_OR_RETURN(
      shape_rules::WindowGeometry g,
      shape_rules::ComputeWindowGeometry(
          node, transpose ? shape_rules::WindowOp::kConvTranspose : shape_rules::WindowOp::kConv, x, kernel));
  ConvParams p;
  p.transpose = transpose;
  p.spatial = g.spatial;
  p.batch = x[0];
  p.in_channels = x[1];
  p.group = node.attrs.GetInt("group", 1);
  if (p.group <= 0 || p.in_channels % p.group != 0) return InvalidArgument(node.Describe(), ": bad group");
  p.out_channels = transpose ? w[1] * p.group : w[0];
  if (p.out_channels % p.group != 0) return InvalidArgument(node.Describe(), ": bad group");
  const int off = 3 - g.spatial;  // leading unit axes
  for (int i = 0; i < g.spatial; ++i) {
    const size_t s = static_cast<size_t>(i), d = static_cast<size_t>(i + off);
    p.in[d] = g.in[s];
    p.out[d] = g.out[s];
    p.kernel[d] = g.kernel[s];
    p.stride[d] = g.strides[s];
    p.dilation[d] = g.dilations[s];
    p.pad_begin[d] = g.pad_begin[s];
    p.pad_end[d] = g.pad_end[s];
    p.output_padding[d] = g.output_padding[s];
  }
  p.has_bias = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined;
  if (node.domain == kItkitDomain) {
    ITKIT_ASSIGN_OR_RETURN(p.act, ParseActivation(node));
  }
  Shape expected = {p.batch, p.out_channels};
  expected.insert(expected.end(), g.out.begin(), g.out.end());
  if (expected != sig.outputs[0].shape)
    return Internal(node.Describe(), ": planned output ", ShapeToString(sig.outputs[0].shape),
                    " differs from the kernel's ", ShapeToString(expected));
  return p;
}

namespace {

class ReferenceConvKernel final : public OpKernel {
 public:
  explicit ReferenceConvKernel(ConvParams p) : p_(p) {}
  Status Run(KernelContext& ctx) override {
    const float* x = ctx.inputs[0]->data<float>();
    const float* w = ctx.inputs[1]->data<float>();
    const float* b = ctx.inputs.size() > 2 && ctx.inputs[2] ? ctx.inputs[2]->data<float>() : nullptr;
    float* y = ctx.outputs[0]->data<float>();
    if (p_.transpose) {
      ConvTransposeReference(p_, x, w, b, y, ctx.pool);
    } else {
      ConvReference(p_, x, w, b, y, ctx.pool);
    }
    return Status::Ok();
  }

 private:
  ConvParams p_;
};

// FusedConv with Z: the convolution (+ bias) by any of the kernels below, then
// Y = act(Y + Z) in one pass. Y may be placed over Z (in_place_input): the convolution
// then writes a workspace copy first.
class ConvPlusZKernel final : public OpKernel {
 public:
  ConvPlusZKernel(std::unique_ptr<Node> inner_node, std::unique_ptr<OpKernel> conv, Activation act, size_t y_bytes)
      : inner_node_(std::move(inner_node)), conv_(std::move(conv)), act_(act), y_bytes_(AlignUp(y_bytes)) {}

  size_t workspace_bytes() const override { return AlignUp(conv_->workspace_bytes()) + y_bytes_; }
  int in_place_input() const override { return 3; }

  Status Run(KernelContext& ctx) override {
    if (ctx.inputs.size() < 4 || ctx.inputs[3] == nullptr) return Internal("FusedConv: Z missing");
    Tensor& y = *ctx.outputs[0];
    const bool z_in_y = ctx.inputs[3]->raw() == y.raw();
    Tensor scratch;
    KernelContext conv_ctx = ctx;
    conv_ctx.inputs.resize(3);
    conv_ctx.workspace_bytes = AlignUp(conv_->workspace_bytes());
    if (z_in_y) {
      uint8_t* after_conv_workspace = static_cast<uint8_t*>(ctx.workspace) + conv_ctx.workspace_bytes;
      scratch = Tensor::Wrap(y.dtype(), y.shape(), nullptr, after_conv_workspace, y.device());
      conv_ctx.outputs = {&scratch};
    }
    ITKIT_RETURN_IF_ERROR(conv_->Run(conv_ctx));
    const float* conv = z_in_y ? scratch.data<float>() : y.data<float>();
    float* out = y.data<float>();
    const float* z = ctx.inputs[3]->data<float>();
    const Activation act = act_;
    ParallelFor(ctx.pool, y.size(), 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = conv[i] + z[i];
      ApplyActivation(act, out + begin, end - begin);
    });
    return Status::Ok();
  }

 private:
  std::unique_ptr<Node> inner_node_;  // the convolution's node (no Z, no activation): conv_ may point at it
  std::unique_ptr<OpKernel> conv_;
  Activation act_;
  size_t y_bytes_;
};

Result<std::unique_ptr<OpKernel>> CreateConv(const NodeSignature& sig) {
  return CreateConvKernel(sig, false, ConvImpl::kAuto);
}
Result<std::unique_ptr<OpKernel>> CreateConvTranspose(const NodeSignature& sig) {
  return CreateConvKernel(sig, true, ConvImpl::kAuto);
}

}  // namespace

static Result<std::unique_ptr<OpKernel>> CreateConvKernelWithoutZ(const NodeSignature& sig, bool transpose,
                                                                  ConvImpl impl) {
  ITKIT_ASSIGN_OR_RETURN(ConvParams p, MakeConvParams(sig, transpose));
  const bool empty = p.batch == 0 || p.out_channels == 0 || p.out_spatial() == 0 || p.in_channels == 0 ||
                     p.in_spatial() == 0;
  if (impl == ConvImpl::kGemm || (impl == ConvImpl::kAuto && !empty)) {
    if (GemmConvTransposeApplies(p)) return CreateGemmConvTransposeKernel(sig, p);
    if (PointwiseConvApplies(p)) return CreatePointwiseConvKernel(sig, p);
    if (impl == ConvImpl::kGemm) return Unsupported(sig.node->Describe(), ": no GEMM form for this convolution");
  }
  if (impl != ConvImpl::kReference && !empty) {
    auto fast = CreateOnednnConvKernel(sig, p);
    if (fast.ok() || impl == ConvImpl::kOnednn) return fast;
    // Any case oneDNN turns down (odd padding, huge kernels) still runs, slowly.
  }
  if (impl == ConvImpl::kOnednn) return Unsupported(sig.node->Describe(), ": empty tensors are not sent to oneDNN");
  return std::unique_ptr<OpKernel>(std::make_unique<ReferenceConvKernel>(p));
}

Result<std::unique_ptr<OpKernel>> CreateConvKernel(const NodeSignature& sig, bool transpose, ConvImpl impl) {
  const bool has_z = !transpose && sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined;
  if (!has_z) return CreateConvKernelWithoutZ(sig, transpose, impl);
  if (sig.inputs[3].dtype != DType::kF32)
    return Unsupported(sig.node->Describe(), ": ", DTypeName(sig.inputs[3].dtype), " Z is not supported on the CPU");
  ITKIT_ASSIGN_OR_RETURN(Activation act, ParseActivation(*sig.node));
  auto inner_node = std::make_unique<Node>(*sig.node);
  inner_node->inputs.resize(3);
  inner_node->attrs.Erase("activation");
  NodeSignature inner = sig;
  inner.node = inner_node.get();
  inner.inputs.resize(3);
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> conv, CreateConvKernelWithoutZ(inner, false, impl));
  const size_t y_bytes = static_cast<size_t>(ElementCount(sig.outputs[0].shape)) * sizeof(float);
  return std::unique_ptr<OpKernel>(
      std::make_unique<ConvPlusZKernel>(std::move(inner_node), std::move(conv), act, y_bytes));
}

void AppendConvKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"", "Conv", CreateConv});
  table.push_back({"", "ConvTranspose", CreateConvTranspose});
  table.push_back({"itkit", "FusedConv", CreateConv});
}

}  // namespace itkit::cpu
