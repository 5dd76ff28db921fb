// Connected chains/trees of at least two elementwise float ops become one
// itkit.FusedElementwise node (program format: itkit/fused_elementwise.h): GELU as
// torch exports it (Div → Erf → Add → Mul → Mul), Swish/SiLU (Mul(x, Sigmoid(x))),
// x * scale + bias, ... One read of each input and one write instead of one pass per op.
//
// A tree grows from its root (the most downstream op) towards its inputs: an operand's
// producer joins when it is a supported op on the same float dtype, the operand is read
// by this tree's op alone (once, and is no graph output), and the limits hold (16
// instructions, 8 distinct external inputs). Everything else is an external input;
// one value may feed several ops of the tree (x in Swish). A one-element constant
// operand of a binary op becomes an immediate (its rank goes to `broadcast_rank`).
// Dtypes come from static_info.h; a tree whose dtype is not known to be f32/f16 (e.g.
// the int64 shape arithmetic torch exports) is left alone.
//
// Run once, after the other passes have settled (passes.cpp): the GroupNorm pattern
// (Reshape → InstanceNorm → Reshape → Mul → Add), Conv → act and norm → act/residual
// fusions match elementwise ops too, and keep them.
#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <string_view>

#include "itkit/fused_elementwise.h"
#include "itkit/op_table.h"
#include "passes/graph_edit.h"
#include "passes/pass_list.h"
#include "passes/static_info.h"

namespace itkit::passes {
namespace {

using fused::OpCode;

struct OpEntry {
  std::string_view op;
  OpCode code;
};

constexpr OpEntry kOps[] = {
    {"Relu", OpCode::kRelu},         {"LeakyRelu", OpCode::kLeakyRelu},   {"Sigmoid", OpCode::kSigmoid},
    {"Tanh", OpCode::kTanh},         {"Erf", OpCode::kErf},               {"Exp", OpCode::kExp},
    {"Log", OpCode::kLog},           {"Sqrt", OpCode::kSqrt},             {"Abs", OpCode::kAbs},
    {"Neg", OpCode::kNeg},           {"Reciprocal", OpCode::kReciprocal}, {"Floor", OpCode::kFloor},
    {"Ceil", OpCode::kCeil},         {"Round", OpCode::kRound},           {"Softplus", OpCode::kSoftplus},
    {"Softsign", OpCode::kSoftsign}, {"Elu", OpCode::kElu},               {"Selu", OpCode::kSelu},
    {"HardSigmoid", OpCode::kHardSigmoid}, {"HardSwish", OpCode::kHardSwish}, {"Sin", OpCode::kSin},
    {"Cos", OpCode::kCos},           {"Clip", OpCode::kClip},             {"Add", OpCode::kAdd},
    {"Sum", OpCode::kAdd},           {"Sub", OpCode::kSub},               {"Mul", OpCode::kMul},
    {"Div", OpCode::kDiv},           {"Pow", OpCode::kPow},               {"Max", OpCode::kMax},
    {"Min", OpCode::kMin},           {"PRelu", OpCode::kPRelu},
};

// One operand of an instruction: a value, or a one-element constant inlined.
struct Operand {
  std::string value;
  bool immediate = false;
  float imm = 0.0f;
  int rank = 0;  // of the inlined constant
};

struct Instr {
  OpCode code;
  float imm0 = 0.0f, imm1 = 0.0f;
  std::vector<Operand> operands;  // 1 (unary) or 2 (binary)
};

const Tensor* ScalarConstant(const Graph& graph, const std::string& name) {
  const Tensor* t = Constant(graph, name);
  return t && t->size() == 1 && t->dtype() != DType::kBool ? t : nullptr;
}

// `node` as one instruction, or nullopt when it is no supported elementwise float op.
std::optional<Instr> AsInstruction(const Graph& graph, const Node& node, const StaticInfoMap& info, DType dt) {
  if (!IsOnnxDomain(node.domain) || node.outputs.size() != 1 || node.outputs[0].empty()) return std::nullopt;
  const OpEntry* entry = nullptr;
  for (const OpEntry& e : kOps)
    if (e.op == node.op_type) entry = &e;
  if (!entry) return std::nullopt;
  Instr in;
  in.code = entry->code;
  const Attributes& a = node.attrs;
  const size_t arity = fused::IsBinary(in.code) ? 2 : 1;
  if (in.code == OpCode::kClip) {
    if (node.inputs.empty() || node.inputs.size() > 3 || node.inputs[0].empty()) return std::nullopt;
    constexpr float kInf = std::numeric_limits<float>::infinity();
    in.imm0 = -kInf;
    in.imm1 = kInf;
    if (graph.onnx_opset() < 11) {
      if (node.inputs.size() != 1) return std::nullopt;
      in.imm0 = a.GetFloat("min", -kInf);
      in.imm1 = a.GetFloat("max", kInf);
    } else {
      for (size_t k = 1; k < node.inputs.size(); ++k) {
        if (node.inputs[k].empty()) continue;
        const Tensor* t = ScalarConstant(graph, node.inputs[k]);
        if (!t || !IsFloat(t->dtype())) return std::nullopt;
        (k == 1 ? in.imm0 : in.imm1) = static_cast<float>(t->GetAsDouble(0));
      }
    }
  } else if (node.inputs.size() != arity) {
    return std::nullopt;
  }
  switch (in.code) {
    case OpCode::kLeakyRelu: in.imm0 = a.GetFloat("alpha", 0.01f); break;
    case OpCode::kElu: in.imm0 = a.GetFloat("alpha", 1.0f); break;
    case OpCode::kSelu:
      in.imm0 = a.GetFloat("alpha", 1.67326319217681884765625f);
      in.imm1 = a.GetFloat("gamma", 1.05070102214813232421875f);
      break;
    case OpCode::kHardSigmoid:
      in.imm0 = a.GetFloat("alpha", 0.2f);
      in.imm1 = a.GetFloat("beta", 0.5f);
      break;
    default: break;
  }
  for (size_t k = 0; k < arity; ++k) {
    Operand op;
    op.value = node.inputs[k];
    if (op.value.empty()) return std::nullopt;
    const Tensor* t = arity == 2 ? ScalarConstant(graph, op.value) : nullptr;
    // Pow's exponent may have any numeric dtype; other operands share the op's dtype.
    const bool exponent = in.code == OpCode::kPow && k == 1;
    if (t && (IsFloat(t->dtype()) || exponent)) {
      op.immediate = true;
      op.imm = static_cast<float>(t->GetAsDouble(0));
      op.rank = t->rank();
    } else if (info.Get(op.value).dtype != dt) {
      return std::nullopt;  // unknown or another dtype (an int exponent tensor, ...)
    }
    in.operands.push_back(std::move(op));
  }
  if (arity == 2 && in.operands[0].immediate && in.operands[1].immediate) return std::nullopt;  // fold_constants' job
  return in;
}

struct Tree {
  std::vector<int> members;         // node indices
  std::map<std::string, int> refs;  // external (or not yet expanded) values -> references
};

Tree Grow(const Graph& graph, const GraphIndex& index, const StaticInfoMap& info, const std::vector<bool>& taken,
          int root, const Instr& root_instr, DType dt, std::vector<std::optional<Instr>>& instrs) {
  Tree tree;
  tree.members.push_back(root);
  std::vector<std::pair<std::string, int>> queue;  // (value, the member reading it)
  for (const Operand& op : root_instr.operands) {
    if (op.immediate) continue;
    ++tree.refs[op.value];
    queue.emplace_back(op.value, root);
  }
  for (size_t q = 0; q < queue.size(); ++q) {
    const auto [value, reader] = queue[q];
    const int p = index.Producer(value);
    if (p < 0 || taken[static_cast<size_t>(p)] || index.SoleConsumer(value) != reader) continue;
    if (std::find(tree.members.begin(), tree.members.end(), p) != tree.members.end()) continue;
    if (tree.members.size() >= static_cast<size_t>(fused::kMaxInstructions)) break;
    std::optional<Instr> ins = AsInstruction(graph, graph.nodes[static_cast<size_t>(p)], info, dt);
    if (!ins) continue;
    std::map<std::string, int> refs = tree.refs;
    if (--refs[value] == 0) refs.erase(value);
    for (const Operand& op : ins->operands)
      if (!op.immediate) ++refs[op.value];
    if (refs.size() > static_cast<size_t>(fused::kMaxInputs)) continue;
    tree.refs = std::move(refs);
    tree.members.push_back(p);
    for (const Operand& op : ins->operands)
      if (!op.immediate) queue.emplace_back(op.value, p);
    instrs[static_cast<size_t>(p)] = std::move(ins);
  }
  return tree;
}

}  // namespace

Status FuseElementwise(Graph& graph, bool& changed) {
  const GraphIndex index(graph);
  const StaticInfoMap info(graph);
  const size_t n = graph.nodes.size();
  std::vector<bool> taken(n, false), dead(n, false);
  std::vector<std::optional<Instr>> instrs(n);
  bool fused_any = false;
  // Reverse topological order: a root is met before the ops that feed it.
  for (size_t i = n; i-- > 0;) {
    if (taken[i]) continue;
    const Node& root = graph.nodes[i];
    if (root.outputs.size() != 1) continue;
    const DType dt = info.Get(root.outputs[0]).dtype;
    if (!IsFloat(dt)) continue;
    std::optional<Instr> root_instr = AsInstruction(graph, root, info, dt);
    if (!root_instr) continue;
    instrs[i] = root_instr;
    Tree tree = Grow(graph, index, info, taken, static_cast<int>(i), *root_instr, dt, instrs);
    if (tree.members.size() < 2) continue;
    std::sort(tree.members.begin(), tree.members.end());  // the graph's order is a valid program order

    // Registers: external inputs first (in order of first use), then one per member.
    std::map<std::string, int> reg;
    std::vector<std::string> inputs;
    for (int m : tree.members)
      for (const Operand& op : instrs[static_cast<size_t>(m)]->operands)
        if (!op.immediate && tree.refs.count(op.value) && !reg.count(op.value)) {
          reg[op.value] = static_cast<int>(inputs.size());
          inputs.push_back(op.value);
        }
    fused::Program program;
    program.num_inputs = static_cast<int>(inputs.size());
    for (int m : tree.members) {
      const Instr& in = *instrs[static_cast<size_t>(m)];
      fused::Instruction ins;
      ins.op = in.code;
      ins.dst = program.num_inputs + static_cast<int32_t>(program.code.size());
      ins.imm0 = in.imm0;
      ins.imm1 = in.imm1;
      int32_t regs[2] = {0, 0};
      for (size_t k = 0; k < in.operands.size(); ++k) {
        const Operand& op = in.operands[k];
        if (op.immediate) {
          regs[k] = fused::kImmediate;
          ins.imm0 = op.imm;
          program.broadcast_rank = std::max(program.broadcast_rank, op.rank);
        } else {
          regs[k] = reg.at(op.value);
        }
      }
      ins.a = regs[0];
      ins.b = regs[1];
      reg[graph.nodes[static_cast<size_t>(m)].outputs[0]] = ins.dst;
      program.code.push_back(ins);
    }

    Node node;
    node.name = root.name.empty() ? root.outputs[0] + "_fused" : root.name;
    node.domain = kItkitDomain;
    node.op_type = "FusedElementwise";
    node.inputs = std::move(inputs);
    node.outputs = root.outputs;
    fused::WriteProgram(program, node);
    ITKIT_RETURN_IF_ERROR(fused::ParseProgram(node).status());  // a bug here must not reach a kernel
    for (int m : tree.members) {
      taken[static_cast<size_t>(m)] = true;
      dead[static_cast<size_t>(m)] = true;
    }
    graph.nodes[i] = std::move(node);
    dead[i] = false;
    fused_any = true;
  }
  if (fused_any) {
    RemoveNodes(graph, dead);
    changed = true;
  }
  return Status::Ok();
}

}  // namespace itkit::passes
