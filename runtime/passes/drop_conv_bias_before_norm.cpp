// Conv / ConvTranspose / activation-less itkit.FusedConv (with or without Z) whose
// output is read only by a per-channel norm (InstanceNormalization, or itkit.GroupNorm
// with num_groups = C) as its X loses its bias: the norm subtracts each channel's mean,
// which removes a per-channel constant exactly (and leaves the variance unchanged), so
// the bias is dead arithmetic — on the GPU a whole read+write pass of the activation
// (nnU-Net's Conv→InstanceNorm).
//
// Left alone: an activation between conv and norm (FusedConv with `activation`: the
// bias then shifts what the activation sees), a norm with fewer groups than channels
// (the mean is over several channels, each with its own bias), a conv output with other
// readers or that is a graph output, and a weight or bias that is not a constant whose
// shape gives C (the bias must be provably [C]).
#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {
namespace {

// Output channels of a conv-family node from its constant weight, or -1.
int64_t OutputChannels(const Graph& graph, const Node& conv) {
  const Tensor* w = Constant(graph, conv.inputs[1]);
  if (!w || w->rank() < 3) return -1;
  if (!IsOp(conv, "ConvTranspose")) return w->dim(0);  // W [C_out, C_in/group, k...]
  return w->dim(1) * conv.attrs.GetInt("group", 1);    // W [C_in, C_out/group, k...]
}

// FusedConv may also have a Z (input 3): the norm removes a per-channel constant of
// the sum all the same.
bool IsBiasedConv(const Node& node) {
  if (node.inputs.size() < 3 || !node.has_input(1) || !node.has_input(2) || node.outputs.size() != 1) return false;
  if (node.inputs.size() == 3 && (IsOp(node, "Conv") || IsOp(node, "ConvTranspose"))) return true;
  return node.domain == kItkitDomain && node.op_type == "FusedConv" && node.inputs.size() <= 4 &&
         node.attrs.GetString("activation", "").empty();
}

// A norm of each channel on its own: InstanceNormalization, or GroupNorm with one
// channel per group.
bool IsPerChannelNorm(const Node& norm, int64_t channels) {
  if (IsOp(norm, "InstanceNormalization")) return true;
  return norm.domain == kItkitDomain && norm.op_type == "GroupNorm" &&
         norm.attrs.GetInt("num_groups", 0) == channels;
}

}  // namespace

Status DropConvBiasBeforeNorm(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  bool dropped = false;
  for (Node& conv : graph.nodes) {
    if (!IsBiasedConv(conv)) continue;
    const int norm_index = index.SoleConsumer(conv.outputs[0]);  // -1 for a graph output
    if (norm_index < 0) continue;
    const Node& norm = graph.nodes[static_cast<size_t>(norm_index)];
    if (norm.inputs.empty() || norm.inputs[0] != conv.outputs[0]) continue;
    const int64_t channels = OutputChannels(graph, conv);
    if (channels <= 0 || !IsPerChannelNorm(norm, channels)) continue;
    const Tensor* bias = Constant(graph, conv.inputs[2]);
    if (!bias || bias->rank() != 1 || bias->dim(0) != channels) continue;
    if (conv.inputs.size() > 3) {
      conv.inputs[2].clear();  // an omitted optional input; Z stays
    } else {
      conv.inputs.resize(2);
    }
    dropped = true;
  }
  if (dropped) {
    RemoveUnusedInitializers(graph);
    changed = true;
  }
  return Status::Ok();
}

}  // namespace itkit::passes
