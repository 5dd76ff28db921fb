// Concat(x_1..x_k, axis = 1) read only by a Conv (or itkit.FusedConv) becomes one
// convolution per part, each adding into the next through itkit.FusedConv's Z:
//   y_1 = Conv(x_1, W[:, part 1]),  y_j = FusedConv(x_j, W[:, part j], Z = y_{j-1}),
// the last one with the bias and the activation. The same sums, without the Concat:
// in a U-Net decoder the concatenated skip + upsampled tensor is the largest value of
// the network (at batch 4 and 128^3, 1 GiB of the 2 GiB peak on the GPU), and the
// copy into it is a full read and write of both parts.
//
// Order: the parts' convolutions run in the order their inputs are produced, all but
// the last placed just before the producer of the last part, so an early part (the
// skip) is read and dropped before the late one (the upsampled tensor) is made.
//
// Left alone: grouped convolutions, weights that are not constants, a Concat with a
// single input, other readers or a graph output, parts whose channel count is not
// known before shapes are given, and FusedConv that already has a Z.
#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "itkit/shape_inference.h"
#include "passes/graph_edit.h"
#include "passes/pass_list.h"
#include "passes/static_info.h"

namespace itkit::passes {
namespace {

bool IsSplittableConv(const Node& node) {
  if (node.outputs.size() != 1 || node.inputs.size() < 2 || node.inputs.size() > 3) return false;
  if (node.attrs.GetInt("group", 1) != 1) return false;
  return IsOp(node, "Conv") || (node.domain == kItkitDomain && node.op_type == "FusedConv");
}

// Channels of `value` before shapes are given: from its static shape, or from the
// constant weight of the ConvTranspose producing it. -1 when unknown.
int64_t ChannelsOf(const Graph& graph, const GraphIndex& index, const StaticInfoMap& info, const std::string& value) {
  const StaticInfo& s = info.Get(value);
  if (s.has_shape && s.dims.size() >= 2) {
    const std::string& d = s.dims[1];
    if (!d.empty() && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::stoll(d);
  }
  const int p = index.Producer(value);
  if (p < 0) return -1;
  const Node& producer = graph.nodes[static_cast<size_t>(p)];
  if (!IsOp(producer, "ConvTranspose") || producer.inputs.size() < 2) return -1;
  const Tensor* w = Constant(graph, producer.inputs[1]);
  if (!w || w->rank() < 3) return -1;
  return w->dim(1) * producer.attrs.GetInt("group", 1);
}

// W[:, begin : begin + count, ...] as a new tensor.
Result<Tensor> SliceInputChannels(const Tensor& w, int64_t begin, int64_t count) {
  Shape shape = w.shape();
  shape[1] = count;
  ITKIT_ASSIGN_OR_RETURN(Tensor part, Tensor::Allocate(w.dtype(), shape));
  int64_t k = 1;
  for (int i = 2; i < w.rank(); ++i) k *= w.dim(i);
  const size_t row = static_cast<size_t>(count * k) * DTypeSize(w.dtype());
  const auto* src = static_cast<const uint8_t*>(w.raw());
  auto* dst = static_cast<uint8_t*>(part.raw());
  for (int64_t o = 0; o < w.dim(0); ++o)
    std::memcpy(dst + static_cast<size_t>(o) * row,
                src + static_cast<size_t>((o * w.dim(1) + begin) * k) * DTypeSize(w.dtype()), row);
  return part;
}

struct Part {
  std::string value;
  int64_t channels = 0;
  int64_t offset = 0;    // first input channel in W
  int producer = -1;     // node index, -1 for graph inputs and constants
};

}  // namespace

Status SplitConvOverConcat(Graph& graph, bool& changed) {
  GraphIndex index(graph);
  const StaticInfoMap info(graph);
  // New nodes, each to go before node `before` (graph.nodes.size(): at the end).
  std::vector<std::pair<size_t, Node>> inserts;
  std::vector<bool> dead(graph.nodes.size(), false);
  std::unordered_set<std::string> reserved;  // value names of the new nodes
  for (size_t ci = 0; ci < graph.nodes.size(); ++ci) {
    const Node& concat = graph.nodes[ci];
    if (!IsOp(concat, "Concat") || concat.inputs.size() < 2 || concat.outputs.size() != 1) continue;
    const int conv_index = index.SoleConsumer(concat.outputs[0]);
    if (conv_index < 0 || dead[static_cast<size_t>(conv_index)]) continue;
    const Node& conv = graph.nodes[static_cast<size_t>(conv_index)];
    if (!IsSplittableConv(conv) || conv.inputs[0] != concat.outputs[0]) continue;
    const Tensor* w = Constant(graph, conv.inputs[1]);
    if (!w || w->rank() < 3 || (w->dtype() != DType::kF32 && w->dtype() != DType::kF16)) continue;
    auto axis = NormalizeAxis(concat.attrs.GetInt("axis", 0), static_cast<int>(w->rank()), concat);
    if (!axis.ok() || *axis != 1) continue;
    std::vector<Part> parts;
    int64_t offset = 0;
    bool known = true;
    for (const std::string& in : concat.inputs) {
      const int64_t c = in.empty() ? -1 : ChannelsOf(graph, index, info, in);
      if (c <= 0) {
        known = false;
        break;
      }
      parts.push_back({in, c, offset, index.Producer(in)});
      offset += c;
    }
    if (!known || offset != w->dim(1)) continue;
    std::stable_sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.producer < b.producer; });
    const size_t last_producer =
        parts.back().producer < 0 ? static_cast<size_t>(conv_index) : static_cast<size_t>(parts.back().producer);
    std::string previous;
    for (size_t j = 0; j < parts.size(); ++j) {
      const bool last = j + 1 == parts.size();
      ITKIT_ASSIGN_OR_RETURN(Tensor wj, SliceInputChannels(*w, parts[j].offset, parts[j].channels));
      const std::string w_name = FreshName(graph, reserved, conv.inputs[1] + "_in" + std::to_string(parts[j].offset));
      graph.initializers[w_name] = std::move(wj);
      Node n;
      n.name = conv.name.empty() ? std::string() : conv.name + "_part" + std::to_string(j);
      n.domain = kItkitDomain;
      n.op_type = "FusedConv";
      n.attrs = conv.attrs;
      if (!last) n.attrs.Erase("activation");
      n.inputs = {parts[j].value, w_name, last && conv.has_input(2) ? conv.inputs[2] : std::string()};
      if (!previous.empty()) n.inputs.push_back(previous);
      while (!n.inputs.empty() && n.inputs.back().empty()) n.inputs.pop_back();
      if (last) {
        n.outputs = {conv.outputs[0]};
        inserts.emplace_back(static_cast<size_t>(conv_index), std::move(n));
      } else {
        previous = FreshName(graph, reserved, conv.outputs[0] + "_sum" + std::to_string(j));
        n.outputs = {previous};
        inserts.emplace_back(last_producer, std::move(n));
      }
    }
    dead[ci] = true;
    dead[static_cast<size_t>(conv_index)] = true;
    changed = true;
  }
  if (!changed) return Status::Ok();
  // Rebuild the node list: inserts before their anchors, dead nodes out.
  std::vector<Node> nodes;
  nodes.reserve(graph.nodes.size() + inserts.size());
  std::stable_sort(inserts.begin(), inserts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t next = 0;
  for (size_t i = 0; i <= graph.nodes.size(); ++i) {
    while (next < inserts.size() && inserts[next].first == i) nodes.push_back(std::move(inserts[next++].second));
    if (i < graph.nodes.size() && !dead[i]) nodes.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(nodes);
  RemoveUnusedInitializers(graph);
  return Status::Ok();
}

}  // namespace itkit::passes
