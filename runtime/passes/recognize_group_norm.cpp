// torch exports nn.GroupNorm(G, C) as
//   r = Reshape(x, [N|0, G, -1]); n = InstanceNormalization(r, ones[G], zeros[G], eps)
//   y = Reshape(n, Shape(x));     [y = Mul(y, gamma[C,1,..]); y = Add(y, beta[C,1,..])]
// This pass replaces the chain with one itkit.GroupNorm(x, gamma[C], beta[C]).
#include <algorithm>

#include "passes/graph_edit.h"
#include "passes/pass_list.h"

namespace itkit::passes {
namespace {

bool AllEqual(const Tensor* t, float value) {
  if (!t || t->dtype() != DType::kF32) return false;
  for (int64_t i = 0; i < t->size(); ++i)
    if (t->data<float>()[i] != value) return false;
  return true;
}

// A per-channel constant laid out as [C,1,...] or [1,C,1,...] (broadcast against
// [N,C,spatial...]); returns its C values.
bool PerChannel(const Tensor* t, std::vector<float>* values) {
  if (!t || t->dtype() != DType::kF32 || t->rank() < 1) return false;
  int channel_axis = -1;
  for (int a = 0; a < t->rank(); ++a) {
    if (t->dim(a) == 1) continue;
    if (channel_axis >= 0) return false;
    channel_axis = a;
  }
  values->assign(t->data<float>(), t->data<float>() + t->size());
  return true;
}

}  // namespace

Status RecognizeGroupNorm(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  std::vector<bool> dead(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& norm = graph.nodes[i];
    if (!IsOp(norm, "InstanceNormalization") || norm.inputs.size() != 3 || dead[i]) continue;
    // Reshape in: [0|N, G, -1] of some x.
    const int r1 = index.Producer(norm.inputs[0]);
    if (r1 < 0 || !IsOp(graph.nodes[static_cast<size_t>(r1)], "Reshape")) continue;
    const Node& reshape_in = graph.nodes[static_cast<size_t>(r1)];
    if (index.SoleConsumer(reshape_in.outputs[0]) != static_cast<int>(i)) continue;
    const Tensor* target = Constant(graph, reshape_in.inputs[1]);
    if (!target || target->size() != 3 || target->GetAsInt64(2) != -1) continue;
    const int64_t groups = target->GetAsInt64(1);
    const Tensor* ones = Constant(graph, norm.inputs[1]);
    const Tensor* zeros = Constant(graph, norm.inputs[2]);
    if (groups <= 0 || !ones || ones->size() != groups || !AllEqual(ones, 1.0f) || !AllEqual(zeros, 0.0f)) continue;
    const std::string& x = reshape_in.inputs[0];
    // Reshape back to Shape(x).
    const int r2 = index.SoleConsumer(norm.outputs[0]);
    if (r2 < 0 || !IsOp(graph.nodes[static_cast<size_t>(r2)], "Reshape")) continue;
    const Node& reshape_out = graph.nodes[static_cast<size_t>(r2)];
    const int shape_node = index.Producer(reshape_out.inputs[1]);
    if (shape_node < 0 || !IsOp(graph.nodes[static_cast<size_t>(shape_node)], "Shape") ||
        graph.nodes[static_cast<size_t>(shape_node)].inputs[0] != x ||
        graph.nodes[static_cast<size_t>(shape_node)].attrs.Has("start") ||
        graph.nodes[static_cast<size_t>(shape_node)].attrs.Has("end"))
      continue;
    // Optional affine Mul/Add with per-channel constants.
    std::string output = reshape_out.outputs[0];
    std::vector<int> absorbed = {r1, static_cast<int>(i), r2};
    std::vector<float> gamma, beta;
    int mul = index.SoleConsumer(output);
    if (mul >= 0 && IsOp(graph.nodes[static_cast<size_t>(mul)], "Mul")) {
      const Node& m = graph.nodes[static_cast<size_t>(mul)];
      const std::string& other = m.inputs[0] == output ? m.inputs[1] : m.inputs[0];
      if (PerChannel(Constant(graph, other), &gamma)) {
        absorbed.push_back(mul);
        output = m.outputs[0];
        int add = index.SoleConsumer(output);
        if (add >= 0 && IsOp(graph.nodes[static_cast<size_t>(add)], "Add")) {
          const Node& a = graph.nodes[static_cast<size_t>(add)];
          const std::string& other_add = a.inputs[0] == output ? a.inputs[1] : a.inputs[0];
          if (PerChannel(Constant(graph, other_add), &beta) && beta.size() == gamma.size()) {
            absorbed.push_back(add);
            output = a.outputs[0];
          }
        }
      }
    }
    if (gamma.empty()) continue;  // without the affine part C is unknown here; leave it
    if (beta.empty()) beta.assign(gamma.size(), 0.0f);
    if (static_cast<int64_t>(gamma.size()) % groups != 0) continue;

    const float eps = norm.attrs.GetFloat("epsilon", 1e-5f);
    const std::string node_name = norm.name;
    ITKIT_ASSIGN_OR_RETURN(Tensor g, Tensor::FromVector(gamma, {static_cast<int64_t>(gamma.size())}));
    ITKIT_ASSIGN_OR_RETURN(Tensor b, Tensor::FromVector(beta, {static_cast<int64_t>(beta.size())}));
    const std::string g_name = UniqueName(graph, node_name + "_gn_scale");
    graph.initializers[g_name] = std::move(g);
    const std::string b_name = UniqueName(graph, node_name + "_gn_bias");
    graph.initializers[b_name] = std::move(b);

    Node gn;
    gn.name = node_name.empty() ? output + "_groupnorm" : node_name;
    gn.domain = kItkitDomain;
    gn.op_type = "GroupNorm";
    gn.inputs = {x, g_name, b_name};
    gn.outputs = {output};
    gn.attrs.SetInt("num_groups", groups);
    gn.attrs.SetFloat("epsilon", eps);
    for (int k : absorbed) dead[static_cast<size_t>(k)] = true;
    // The GroupNorm takes the place of the last absorbed node, keeping topological order.
    int last = *std::max_element(absorbed.begin(), absorbed.end());
    graph.nodes[static_cast<size_t>(last)] = std::move(gn);
    dead[static_cast<size_t>(last)] = false;
    changed = true;
  }
  if (changed) {
    RemoveNodes(graph, dead);
    RemoveUnusedInitializers(graph);
  }
  return Status::Ok();
}

}  // namespace itkit::passes
