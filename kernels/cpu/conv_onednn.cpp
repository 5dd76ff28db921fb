// Conv / ConvTranspose / FusedConv through oneDNN (see docs/cpu-backend.md).
//
// At creation: one primitive per signature with format_tag::any for source,
// weights and destination, so oneDNN picks its blocked layouts (nCdhw8c/16c) and its
// fastest JIT kernel; bias and the fused activation go into the primitive (bias
// argument + eltwise post-op); constant weights are reordered once into the
// primitive's layout. At run time: plain NC... source → blocked reorder, the
// primitive, blocked → plain destination reorder, all in the planner's workspace,
// with oneDNN's own OpenMP threading capped to the session's thread count.
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "cpu/conv_kernels.h"
#include "cpu/onednn_util.h"

namespace itkit::cpu {
namespace {

using dnnl::memory;

// The model's spatial axes of a padded-to-3 parameter.
memory::dims Spatial(const ConvParams& p, const std::array<int64_t, 3>& v, int64_t delta = 0) {
  memory::dims d;
  for (int i = 3 - p.spatial; i < 3; ++i) d.push_back(v[static_cast<size_t>(i)] + delta);
  return d;
}

memory::dims Concat(memory::dims a, const memory::dims& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Row-major strides of `dims` with the memory order of axes a and b swapped.
memory::dims StridesWithSwap(const memory::dims& dims, size_t a, size_t b) {
  std::vector<size_t> order(dims.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::swap(order[a], order[b]);
  memory::dims strides(dims.size());
  int64_t s = 1;
  for (size_t k = order.size(); k-- > 0;) {
    strides[order[k]] = s;
    s *= dims[order[k]];
  }
  return strides;
}

class OnednnConvKernel final : public OpKernel {
 public:
  Status Init(const NodeSignature& sig, const ConvParams& p);
  Status Run(KernelContext& ctx) override;
  size_t workspace_bytes() const override { return workspace_bytes_; }

 private:
  void Build(const NodeSignature& sig, const ConvParams& p);  // throws dnnl::error

  std::string who_;
  memory::desc user_src_, user_dst_, user_w_, src_, dst_, w_, bias_, scratch_;
  dnnl::primitive conv_;
  dnnl::reorder src_reorder_, dst_reorder_, w_reorder_;
  bool reorder_src_ = false, reorder_dst_ = false, reorder_w_ = false;
  memory packed_w_;               // constant weights in the primitive's layout
  bool has_bias_ = false;
  std::vector<float> const_bias_;  // copied: constants need not outlive the plan
  size_t src_off_ = 0, dst_off_ = 0, w_off_ = 0, scratch_off_ = 0, workspace_bytes_ = 0;
};

void OnednnConvKernel::Build(const NodeSignature& sig, const ConvParams& p) {
  const dnnl::engine& eng = OnednnEngine();
  const auto f32 = memory::data_type::f32;
  const memory::dims src_dims = Concat({p.batch, p.in_channels}, Spatial(p, p.in));
  const memory::dims dst_dims = Concat({p.batch, p.out_channels}, Spatial(p, p.out));
  const memory::dims k = Spatial(p, p.kernel);
  const int64_t g = p.group, icg = p.in_channels / g, ocg = p.out_channels / g;
  // oneDNN's logical weight dims are (G,) OC, IC, k... for both directions; ONNX
  // stores Conv weights as [OC, IC/g, k] (= that order) and ConvTranspose weights as
  // [IC, OC/g, k] (OC and IC swapped in memory).
  memory::dims w_dims = g == 1 ? Concat({p.out_channels, p.in_channels}, k) : Concat({g, ocg, icg}, k);
  const size_t o_axis = g == 1 ? 0 : 1;
  user_w_ = p.transpose ? memory::desc(w_dims, f32, StridesWithSwap(w_dims, o_axis, o_axis + 1))
                        : PlainDesc(w_dims);
  user_src_ = PlainDesc(src_dims);
  user_dst_ = PlainDesc(dst_dims);

  const memory::desc src_any(src_dims, f32, memory::format_tag::any);
  const memory::desc dst_any(dst_dims, f32, memory::format_tag::any);
  const memory::desc w_any(w_dims, f32, memory::format_tag::any);
  bias_ = memory::desc({p.out_channels}, f32, memory::format_tag::a);

  dnnl::primitive_attr attr;
  // User scratchpad: the planner's workspace holds it, and primitives stay safe to
  // run from several threads at once.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (p.act.kind != ActKind::kNone) {
    dnnl::post_ops ops;
    switch (p.act.kind) {
      case ActKind::kRelu: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f); break;
      case ActKind::kLeakyRelu: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, p.act.alpha, 0.0f); break;
      case ActKind::kSigmoid: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_logistic, 0.0f, 0.0f); break;
      case ActKind::kTanh: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_tanh, 0.0f, 0.0f); break;
      case ActKind::kGelu: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f); break;
      case ActKind::kNone: break;
    }
    attr.set_post_ops(ops);
  }
  const memory::dims strides = Spatial(p, p.stride);
  const memory::dims dilates = Spatial(p, p.dilation, -1);  // oneDNN counts dilation from 0
  const memory::dims pad_l = Spatial(p, p.pad_begin);
  memory::dims pad_r = Spatial(p, p.pad_end);
  const auto kind = dnnl::prop_kind::forward_inference;
  if (p.transpose) {
    // output_padding extends the end of the output: negative right padding.
    const memory::dims opad = Spatial(p, p.output_padding);
    for (size_t i = 0; i < pad_r.size(); ++i) pad_r[i] -= opad[i];
    using Deconv = dnnl::deconvolution_forward;
    const auto alg = dnnl::algorithm::deconvolution_direct;
    Deconv::primitive_desc pd =
        p.has_bias
            ? Deconv::primitive_desc(
                  Deconv::desc(kind, alg, src_any, w_any, bias_, dst_any, strides, dilates, pad_l, pad_r), attr, eng)
            : Deconv::primitive_desc(
                  Deconv::desc(kind, alg, src_any, w_any, dst_any, strides, dilates, pad_l, pad_r), attr, eng);
    src_ = pd.src_desc();
    dst_ = pd.dst_desc();
    w_ = pd.weights_desc();
    scratch_ = pd.scratchpad_desc();
    conv_ = Deconv(pd);
  } else {
    using Conv = dnnl::convolution_forward;
    const auto alg = dnnl::algorithm::convolution_direct;
    Conv::primitive_desc pd =
        p.has_bias
            ? Conv::primitive_desc(
                  Conv::desc(kind, alg, src_any, w_any, bias_, dst_any, strides, dilates, pad_l, pad_r), attr, eng)
            : Conv::primitive_desc(Conv::desc(kind, alg, src_any, w_any, dst_any, strides, dilates, pad_l, pad_r),
                                   attr, eng);
    src_ = pd.src_desc();
    dst_ = pd.dst_desc();
    w_ = pd.weights_desc();
    scratch_ = pd.scratchpad_desc();
    conv_ = Conv(pd);
  }

  reorder_src_ = src_ != user_src_;
  reorder_dst_ = dst_ != user_dst_;
  reorder_w_ = w_ != user_w_;
  if (reorder_src_) src_reorder_ = dnnl::reorder(dnnl::reorder::primitive_desc(eng, user_src_, eng, src_));
  if (reorder_dst_) dst_reorder_ = dnnl::reorder(dnnl::reorder::primitive_desc(eng, dst_, eng, user_dst_));

  const Tensor* w_const = sig.inputs[1].constant;
  if (w_const) {
    // Prepack once: the weights never change for this plan.
    packed_w_ = memory(w_, eng);
    memory user(user_w_, eng, const_cast<void*>(w_const->raw()));
    dnnl::stream stream(eng);
    dnnl::reorder(user, packed_w_).execute(stream, user, packed_w_);
    stream.wait();
  } else if (reorder_w_) {
    w_reorder_ = dnnl::reorder(dnnl::reorder::primitive_desc(eng, user_w_, eng, w_));
  }
  has_bias_ = p.has_bias;
  if (p.has_bias && sig.inputs[2].constant) {
    const float* b = sig.inputs[2].constant->data<float>();
    const_bias_.assign(b, b + p.out_channels);
  }

  size_t off = 0;
  if (reorder_src_) {
    src_off_ = off;
    off += AlignUp(src_.get_size());
  }
  if (reorder_dst_) {
    dst_off_ = off;
    off += AlignUp(dst_.get_size());
  }
  if (!w_const && reorder_w_) {
    w_off_ = off;
    off += AlignUp(w_.get_size());
  }
  scratch_off_ = off;
  off += AlignUp(scratch_.get_size());
  workspace_bytes_ = off + 64;  // room to align the base pointer
}

Status OnednnConvKernel::Init(const NodeSignature& sig, const ConvParams& p) {
  who_ = sig.node->Describe();
  try {
    Build(sig, p);
  } catch (const dnnl::error& e) {
    return Unsupported(who_, ": oneDNN has no implementation for this case (", e.what(), ")");
  }
  return Status::Ok();
}

Status OnednnConvKernel::Run(KernelContext& ctx) {
  if (ctx.workspace_bytes < workspace_bytes_ || (!ctx.workspace && workspace_bytes_ > 0))
    return Internal(who_, ": workspace of ", ctx.workspace_bytes, " bytes, need ", workspace_bytes_);
  char* ws = reinterpret_cast<char*>(AlignUp(reinterpret_cast<uintptr_t>(ctx.workspace)));
  try {
    SetOnednnThreads(ctx.pool ? ctx.pool->size() : 1);
    const dnnl::engine& eng = OnednnEngine();
    dnnl::stream stream(eng);
    memory user_src(user_src_, eng, const_cast<void*>(ctx.inputs[0]->raw()));
    memory src = reorder_src_ ? memory(src_, eng, ws + src_off_) : user_src;
    if (reorder_src_) src_reorder_.execute(stream, user_src, src);
    memory weights = packed_w_;
    if (!weights) {
      memory user_w(user_w_, eng, const_cast<void*>(ctx.inputs[1]->raw()));
      weights = user_w;
      if (reorder_w_) {
        weights = memory(w_, eng, ws + w_off_);
        w_reorder_.execute(stream, user_w, weights);
      }
    }
    memory user_dst(user_dst_, eng, ctx.outputs[0]->raw());
    memory dst = reorder_dst_ ? memory(dst_, eng, ws + dst_off_) : user_dst;
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
    if (scratch_.get_size() > 0) args[DNNL_ARG_SCRATCHPAD] = memory(scratch_, eng, ws + scratch_off_);
    if (has_bias_) {
      void* b = const_bias_.empty() ? const_cast<void*>(ctx.inputs[2]->raw()) : const_bias_.data();
      args[DNNL_ARG_BIAS] = memory(bias_, eng, b);
    }
    conv_.execute(stream, args);
    if (reorder_dst_) dst_reorder_.execute(stream, dst, user_dst);
    stream.wait();
  } catch (const dnnl::error& e) {
    return OnednnError(who_, e);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<OpKernel>> CreateOnednnConvKernel(const NodeSignature& sig, const ConvParams& p) {
  auto kernel = std::make_unique<OnednnConvKernel>();
  ITKIT_RETURN_IF_ERROR(kernel->Init(sig, p));
  return std::unique_ptr<OpKernel>(std::move(kernel));
}

}  // namespace itkit::cpu
