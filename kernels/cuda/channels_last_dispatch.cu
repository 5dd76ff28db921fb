// Channels-last signatures on the CUDA backend (Backend::prefers_channels_last). The
// planner offers a node its channels-last form (itkit/channels_last.h); here each
// family is either run by kernels that read the layout themselves (convolutions and
// channel norms: their own Supports checks the tags) or, for layout-blind ops
// (elementwise, Concat on the channel axis), by the ordinary kernel on the stored
// shapes. Everything else declines channels-last data.
#include <memory>

#include "cuda/common.cuh"
#include "itkit/channels_last.h"

namespace itkit::cuda {
namespace {

// The form's tags must be exactly the policy's: a partly tagged elementwise signature
// (say a channels-last input and a row-major output) would be misread.
bool TagsMatchPolicy(const NodeSignature& sig) {
  ChannelsLastForm form;
  if (!ChannelsLastCandidate(sig, &form)) return false;
  for (size_t i = 0; i < sig.inputs.size(); ++i)
    if (sig.inputs[i].channels_last != form.inputs[i]) return false;
  for (size_t o = 0; o < sig.outputs.size(); ++o)
    if (sig.outputs[o].channels_last != form.outputs[o]) return false;
  return true;
}

// The node a layout-blind kernel runs: Concat joins along the stored channel axis
// (the last one).
std::unique_ptr<Node> StoredNode(const NodeSignature& sig) {
  auto node = std::make_unique<Node>(*sig.node);
  if (ChannelsLastKindOf(*sig.node) == ChannelsLastKind::kConcat)
    node->attrs.SetInt("axis", static_cast<int64_t>(sig.outputs[0].shape.size()) - 1);
  return node;
}

// Runs the ordinary kernel on the stored shapes; owns the rewritten node.
class StoredLayoutKernel final : public OpKernel {
 public:
  StoredLayoutKernel(std::unique_ptr<Node> node, std::unique_ptr<OpKernel> inner, NodeSignature stored)
      : node_(std::move(node)), inner_(std::move(inner)), stored_(std::move(stored)) {}
  size_t workspace_bytes() const override { return inner_->workspace_bytes(); }
  Status Run(KernelContext& kc) override {
    // The session's tensors carry logical shapes; the kernel sees the stored ones.
    std::vector<Tensor> ins(kc.inputs.size()), outs(kc.outputs.size());
    KernelContext stored = kc;
    for (size_t i = 0; i < kc.inputs.size() && i < stored_.inputs.size(); ++i) {
      if (!kc.inputs[i]) continue;
      ins[i] = Tensor::View(kc.inputs[i]->dtype(), stored_.inputs[i].shape, const_cast<void*>(kc.inputs[i]->raw()),
                            kc.inputs[i]->device());
      stored.inputs[i] = &ins[i];
    }
    for (size_t o = 0; o < kc.outputs.size() && o < stored_.outputs.size(); ++o) {
      if (!kc.outputs[o]) continue;
      outs[o] = Tensor::View(kc.outputs[o]->dtype(), stored_.outputs[o].shape, kc.outputs[o]->raw(),
                             kc.outputs[o]->device());
      stored.outputs[o] = &outs[o];
    }
    return inner_->Run(stored);
  }

 private:
  std::unique_ptr<Node> node_;
  std::unique_ptr<OpKernel> inner_;
  NodeSignature stored_;
};

}  // namespace

bool ChannelsLastSupports(const CudaOpEntry& entry, const NodeSignature& sig, const CudaContext& ctx,
                          std::string* reason) {
  switch (ChannelsLastKindOf(*sig.node)) {
    case ChannelsLastKind::kConvolution:
    case ChannelsLastKind::kChannelNorm:
      return entry.supports(sig, ctx, reason);
    case ChannelsLastKind::kElementwise:
    case ChannelsLastKind::kConcat: {
      if (!TagsMatchPolicy(sig)) return Reject(reason, "channels-last tags differ from the layout policy");
      std::unique_ptr<Node> node = StoredNode(sig);
      NodeSignature stored = StoredSignature(sig);
      stored.node = node.get();
      return entry.supports(stored, ctx, reason);
    }
    case ChannelsLastKind::kNone:
      break;
  }
  return Reject(reason, "no channels-last form of ", sig.node->op_type);
}

Result<std::unique_ptr<OpKernel>> CreateChannelsLastKernel(const CudaOpEntry& entry, const NodeSignature& sig,
                                                           const std::shared_ptr<CudaContext>& ctx) {
  const ChannelsLastKind kind = ChannelsLastKindOf(*sig.node);
  if (kind == ChannelsLastKind::kConvolution || kind == ChannelsLastKind::kChannelNorm) return entry.create(sig, ctx);
  if (kind == ChannelsLastKind::kNone || !TagsMatchPolicy(sig))
    return Unsupported("no channels-last form of ", sig.node->op_type, " for this signature");
  std::unique_ptr<Node> node = StoredNode(sig);
  NodeSignature stored = StoredSignature(sig);
  stored.node = node.get();
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> inner, entry.create(stored, ctx));
  return std::unique_ptr<OpKernel>(std::make_unique<StoredLayoutKernel>(std::move(node), std::move(inner), stored));
}

}  // namespace itkit::cuda
