// Conv → BatchNormalization (inference) becomes one Conv with rescaled weights:
// s = scale / sqrt(var + eps), W' = W·s[oc], B' = (B − mean)·s + bias.
#include <cmath>

#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {
namespace {

bool IsF32Vector(const Tensor* t, int64_t n) {
  return t && t->dtype() == DType::kF32 && t->rank() == 1 && t->dim(0) == n;
}

}  // namespace

Status FoldBatchNormIntoConv(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& conv = graph.nodes[i];
    if (!IsOp(conv, "Conv") || dead[i] || conv.inputs.size() < 2) continue;
    const int bn_index = index.SoleConsumer(conv.outputs[0]);
    if (bn_index < 0) continue;
    Node& bn = graph.nodes[static_cast<size_t>(bn_index)];
    if (!IsOp(bn, "BatchNormalization") || bn.inputs.size() < 5 || bn.outputs.size() > 1 ||
        bn.attrs.GetInt("training_mode", 0) != 0)
      continue;
    const Tensor* w = Constant(graph, conv.inputs[1]);
    if (!w || w->dtype() != DType::kF32 || w->rank() < 3) continue;
    const int64_t out_channels = w->dim(0);
    const Tensor* scale = Constant(graph, bn.inputs[1]);
    const Tensor* bias = Constant(graph, bn.inputs[2]);
    const Tensor* mean = Constant(graph, bn.inputs[3]);
    const Tensor* var = Constant(graph, bn.inputs[4]);
    const Tensor* conv_bias = conv.has_input(2) ? Constant(graph, conv.inputs[2]) : nullptr;
    if (!IsF32Vector(scale, out_channels) || !IsF32Vector(bias, out_channels) || !IsF32Vector(mean, out_channels) ||
        !IsF32Vector(var, out_channels) || (conv.has_input(2) && !IsF32Vector(conv_bias, out_channels)))
      continue;
    const float eps = bn.attrs.GetFloat("epsilon", 1e-5f);

    ITKIT_ASSIGN_OR_RETURN(Tensor new_w, w->Clone());
    ITKIT_ASSIGN_OR_RETURN(Tensor new_b, Tensor::Allocate(DType::kF32, {out_channels}));
    const int64_t per_channel = w->size() / out_channels;
    for (int64_t oc = 0; oc < out_channels; ++oc) {
      const double s = scale->data<float>()[oc] / std::sqrt(static_cast<double>(var->data<float>()[oc]) + eps);
      float* row = new_w.data<float>() + oc * per_channel;
      for (int64_t k = 0; k < per_channel; ++k) row[k] = static_cast<float>(row[k] * s);
      const double b0 = conv_bias ? conv_bias->data<float>()[oc] : 0.0;
      new_b.data<float>()[oc] = static_cast<float>((b0 - mean->data<float>()[oc]) * s + bias->data<float>()[oc]);
    }
    const std::string w_name = UniqueName(graph, conv.inputs[1] + "_bnfolded");
    graph.initializers[w_name] = std::move(new_w);
    const std::string b_name = UniqueName(graph, conv.inputs[1] + "_bnfolded_bias");
    graph.initializers[b_name] = std::move(new_b);
    conv.inputs.resize(3);
    conv.inputs[1] = w_name;
    conv.inputs[2] = b_name;
    conv.outputs[0] = bn.outputs[0];  // the Conv now produces what the BN produced
    dead[static_cast<size_t>(bn_index)] = true;
    changed = true;
  }
  if (changed) {
    RemoveNodes(graph, dead);
    RemoveUnusedInitializers(graph);
  }
  return Status::Ok();
}

}  // namespace itkit::passes
