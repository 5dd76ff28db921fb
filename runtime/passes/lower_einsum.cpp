// A two-operand Einsum that is a batched matrix product becomes
//   A' = Transpose(A) -> [batch..., M, K]    B' = Transpose(B) -> [batch..., K, N]
//   C = MatMul(A', B') -> [batch..., M, N]   Y = Transpose(C) -> the equation's order
// with identity transposes left out. The CUDA backend has MatMul (cuBLAS) and
// Transpose but no Einsum, so MONAI UNETR's attention ('blxd,blyd->blxy',
// 'blxy,blyd->blxd') fell back to the CPU; on the CPU, MatMul is oneDNN's instead of
// the Einsum kernel's plain loop.
//
// Labels: batch in A, B and the output; M in A and the output; N in B and the output;
// K in A and B only. Left alone (the Einsum kernel runs it): other than two inputs, an
// implicit output, an ellipsis, a label twice in one term, a label summed away from
// one operand only, not exactly one M, one N and one K label, a dtype other than f32
// (the only one Einsum and MatMul share on the CPU), and batch dims of A and B not
// provably equal before shapes are given: MatMul broadcasts a batch dim of size 1 where
// Einsum reports a mismatch (static_info.h's shape classes prove UNETR's q, k and v,
// gathered from one tensor, of one shape).
#include <algorithm>
#include <optional>
#include <unordered_set>
#include <utility>

#include "passes/graph_edit.h"
#include "passes/pass_list.h"
#include "passes/static_info.h"
#include "shape_infer/einsum_equation.h"

namespace itkit::passes {
namespace {

// Where each label of the permuted order stands in `from`; labels all present.
std::vector<int64_t> Perm(const std::vector<char>& from, const std::vector<char>& to) {
  std::vector<int64_t> perm;
  for (char c : to) perm.push_back(std::find(from.begin(), from.end(), c) - from.begin());
  return perm;
}

bool IsIdentity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != static_cast<int64_t>(i)) return false;
  return true;
}

bool HasRepeat(std::vector<char> labels) {
  std::sort(labels.begin(), labels.end());
  return std::adjacent_find(labels.begin(), labels.end()) != labels.end();
}

bool Contains(const std::vector<char>& labels, char c) {
  return std::find(labels.begin(), labels.end(), c) != labels.end();
}

// The equation's labels in the order the rewrite needs them.
struct MatMulForm {
  std::vector<char> a, b, out;  // the terms as written
  std::vector<char> batch;      // in output order
  char m = 0, n = 0, k = 0;
};

// The labels of a batched matrix product, or nothing (see the rules at the top).
std::optional<MatMulForm> AsMatMul(const std::string& equation) {
  auto terms = shape_rules::ParseEinsumTerms(equation);
  if (!terms.ok() || !terms->explicit_output || terms->ellipsis || terms->operands.size() != 2) return std::nullopt;
  MatMulForm f{terms->operands[0], terms->operands[1], terms->output, {}, 0, 0, 0};
  if (HasRepeat(f.a) || HasRepeat(f.b) || HasRepeat(f.out)) return std::nullopt;
  std::vector<char> ms, ns, ks;
  for (char c : f.out) {
    const bool in_a = Contains(f.a, c), in_b = Contains(f.b, c);
    if (in_a && in_b) f.batch.push_back(c);
    else if (in_a) ms.push_back(c);
    else if (in_b) ns.push_back(c);
    else return std::nullopt;  // an output label in no input
  }
  for (char c : f.a) {
    if (Contains(f.out, c)) continue;
    if (!Contains(f.b, c)) return std::nullopt;  // summed away from A alone
    ks.push_back(c);
  }
  for (char c : f.b)
    if (!Contains(f.out, c) && !Contains(f.a, c)) return std::nullopt;  // summed away from B alone
  if (ms.size() != 1 || ns.size() != 1 || ks.size() != 1) return std::nullopt;
  f.m = ms[0];
  f.n = ns[0];
  f.k = ks[0];
  return f;
}

// Every batch label has provably the same size in A and in B.
bool SameBatchDims(const StaticInfoMap& info, const Node& einsum, const MatMulForm& f) {
  std::vector<std::string> a_dims, b_dims;
  if (!info.DimsIfRank(einsum.inputs[0], f.a.size(), &a_dims) ||
      !info.DimsIfRank(einsum.inputs[1], f.b.size(), &b_dims))
    return false;
  for (char c : f.batch) {
    const std::string& a = a_dims[static_cast<size_t>(std::find(f.a.begin(), f.a.end(), c) - f.a.begin())];
    const std::string& b = b_dims[static_cast<size_t>(std::find(f.b.begin(), f.b.end(), c) - f.b.begin())];
    if (a != b) return false;
  }
  return true;
}

Node NewNode(const Node& einsum, const char* op_type, const char* name_suffix, std::vector<std::string> inputs,
             std::string output) {
  Node n;
  n.name = einsum.name.empty() ? std::string() : einsum.name + name_suffix;
  n.op_type = op_type;
  n.inputs = std::move(inputs);
  n.outputs = {std::move(output)};
  return n;
}

// `value` permuted by `perm` (appended to `nodes`), or `value` itself for the identity.
std::string Permuted(const Graph& graph, std::unordered_set<std::string>& reserved, const Node& einsum,
                     const std::string& value, const std::vector<int64_t>& perm, const char* suffix,
                     std::vector<Node>& nodes) {
  if (IsIdentity(perm)) return value;
  Node t = NewNode(einsum, "Transpose", suffix, {value}, FreshName(graph, reserved, einsum.outputs[0] + suffix));
  t.attrs.SetInts("perm", perm);
  nodes.push_back(std::move(t));
  return nodes.back().outputs[0];
}

// The nodes that replace `einsum`, its output value kept on the last one.
std::vector<Node> Lowered(const Graph& graph, std::unordered_set<std::string>& reserved, const Node& einsum,
                          const MatMulForm& f) {
  std::vector<char> a_order = f.batch, b_order = f.batch, c_order = f.batch;
  a_order.insert(a_order.end(), {f.m, f.k});
  b_order.insert(b_order.end(), {f.k, f.n});
  c_order.insert(c_order.end(), {f.m, f.n});
  std::vector<Node> nodes;
  const std::string a =
      Permuted(graph, reserved, einsum, einsum.inputs[0], Perm(f.a, a_order), "_lhs_transpose", nodes);
  const std::string b =
      Permuted(graph, reserved, einsum, einsum.inputs[1], Perm(f.b, b_order), "_rhs_transpose", nodes);
  const std::vector<int64_t> out_perm = Perm(c_order, f.out);
  const bool transpose_out = !IsIdentity(out_perm);
  const std::string& y = einsum.outputs[0];
  nodes.push_back(
      NewNode(einsum, "MatMul", "_matmul", {a, b}, transpose_out ? FreshName(graph, reserved, y + "_matmul") : y));
  if (transpose_out) {
    Node t = NewNode(einsum, "Transpose", "_out_transpose", {nodes.back().outputs[0]}, y);
    t.attrs.SetInts("perm", out_perm);
    nodes.push_back(std::move(t));
  }
  return nodes;
}

}  // namespace

Status LowerEinsum(Graph& graph, bool& changed) {
  const StaticInfoMap info(graph);
  std::unordered_set<std::string> reserved;  // value names of the new nodes
  std::vector<std::pair<size_t, std::vector<Node>>> replacements;  // (einsum's index, its nodes)
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    if (!IsOp(node, "Einsum") || node.inputs.size() != 2 || node.outputs.size() != 1 || node.inputs[0].empty() ||
        node.inputs[1].empty() || node.outputs[0].empty() || info.Get(node.inputs[0]).dtype != DType::kF32 ||
        info.Get(node.inputs[1]).dtype != DType::kF32)
      continue;
    const std::optional<MatMulForm> form = AsMatMul(node.attrs.GetString("equation", ""));
    if (!form || !SameBatchDims(info, node, *form)) continue;
    replacements.emplace_back(i, Lowered(graph, reserved, node, *form));
  }
  if (replacements.empty()) return Status::Ok();
  std::vector<Node> nodes;
  nodes.reserve(graph.nodes.size() + 3 * replacements.size());
  size_t next = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (next < replacements.size() && replacements[next].first == i) {
      for (Node& n : replacements[next++].second) nodes.push_back(std::move(n));
    } else {
      nodes.push_back(std::move(graph.nodes[i]));
    }
  }
  graph.nodes = std::move(nodes);
  changed = true;
  return Status::Ok();
}

}  // namespace itkit::passes
