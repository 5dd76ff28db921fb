#include "itkit/fused_elementwise.h"

namespace itkit::fused {

bool IsValidOpCode(int64_t code) { return (code >= 0 && code <= 22) || (code >= 32 && code <= 39); }

const char* OpCodeName(OpCode op) {
  switch (op) {
    case OpCode::kRelu: return "Relu";
    case OpCode::kLeakyRelu: return "LeakyRelu";
    case OpCode::kSigmoid: return "Sigmoid";
    case OpCode::kTanh: return "Tanh";
    case OpCode::kErf: return "Erf";
    case OpCode::kExp: return "Exp";
    case OpCode::kLog: return "Log";
    case OpCode::kSqrt: return "Sqrt";
    case OpCode::kAbs: return "Abs";
    case OpCode::kNeg: return "Neg";
    case OpCode::kReciprocal: return "Reciprocal";
    case OpCode::kFloor: return "Floor";
    case OpCode::kCeil: return "Ceil";
    case OpCode::kRound: return "Round";
    case OpCode::kSoftplus: return "Softplus";
    case OpCode::kSoftsign: return "Softsign";
    case OpCode::kElu: return "Elu";
    case OpCode::kSelu: return "Selu";
    case OpCode::kHardSigmoid: return "HardSigmoid";
    case OpCode::kHardSwish: return "HardSwish";
    case OpCode::kSin: return "Sin";
    case OpCode::kCos: return "Cos";
    case OpCode::kClip: return "Clip";
    case OpCode::kAdd: return "Add";
    case OpCode::kSub: return "Sub";
    case OpCode::kMul: return "Mul";
    case OpCode::kDiv: return "Div";
    case OpCode::kPow: return "Pow";
    case OpCode::kMax: return "Max";
    case OpCode::kMin: return "Min";
    case OpCode::kPRelu: return "PRelu";
  }
  return "?";
}

Result<Program> ParseProgram(const Node& node) {
  const std::string where = node.Describe();
  Program p;
  p.num_inputs = static_cast<int>(node.inputs.size());
  if (p.num_inputs < 1 || p.num_inputs > kMaxInputs)
    return InvalidArgument(where, ": takes 1 to ", kMaxInputs, " inputs, has ", p.num_inputs);
  const std::vector<int64_t> ints = node.attrs.GetInts("program");
  const std::vector<float> imms = node.attrs.GetFloats("immediates");
  if (ints.empty() || ints.size() % 4 != 0)
    return InvalidArgument(where, ": `program` must hold 4 ints per instruction, has ", ints.size());
  const size_t count = ints.size() / 4;
  if (count > static_cast<size_t>(kMaxInstructions))
    return InvalidArgument(where, ": ", count, " instructions (at most ", kMaxInstructions, ")");
  if (imms.size() != 2 * count)
    return InvalidArgument(where, ": `immediates` must hold 2 floats per instruction (", 2 * count, "), has ",
                           imms.size());
  p.broadcast_rank = static_cast<int>(node.attrs.GetInt("broadcast_rank", 0));
  if (p.broadcast_rank < 0 || p.broadcast_rank > kMaxRank)
    return InvalidArgument(where, ": broadcast_rank ", p.broadcast_rank, " out of range");
  for (size_t i = 0; i < count; ++i) {
    const int64_t code = ints[4 * i], dst = ints[4 * i + 1], a = ints[4 * i + 2], b = ints[4 * i + 3];
    if (!IsValidOpCode(code)) return InvalidArgument(where, ": instruction ", i, " has unknown opcode ", code);
    Instruction ins;
    ins.op = static_cast<OpCode>(code);
    const int64_t expect_dst = p.num_inputs + static_cast<int64_t>(i);
    if (dst != expect_dst)
      return InvalidArgument(where, ": instruction ", i, " writes register ", dst, ", must write ", expect_dst);
    // Operands: a register written before this instruction, or the immediate.
    auto operand_ok = [&](int64_t r) { return r == kImmediate || (r >= 0 && r < expect_dst); };
    if (!operand_ok(a)) return InvalidArgument(where, ": instruction ", i, " reads undefined register ", a);
    if (IsBinary(ins.op)) {
      if (!operand_ok(b)) return InvalidArgument(where, ": instruction ", i, " reads undefined register ", b);
      if (a == kImmediate && b == kImmediate)
        return InvalidArgument(where, ": instruction ", i, " has two immediate operands");
    } else {
      if (a == kImmediate) return InvalidArgument(where, ": unary instruction ", i, " reads an immediate");
      if (b != 0) return InvalidArgument(where, ": unary instruction ", i, " has a second operand");
    }
    ins.dst = static_cast<int32_t>(dst);
    ins.a = static_cast<int32_t>(a);
    ins.b = static_cast<int32_t>(b);
    ins.imm0 = imms[2 * i];
    ins.imm1 = imms[2 * i + 1];
    p.code.push_back(ins);
  }
  return p;
}

void WriteProgram(const Program& program, Node& node) {
  std::vector<int64_t> ints;
  std::vector<float> imms;
  for (const Instruction& ins : program.code) {
    ints.insert(ints.end(), {static_cast<int64_t>(ins.op), ins.dst, ins.a, ins.b});
    imms.insert(imms.end(), {ins.imm0, ins.imm1});
  }
  node.attrs.SetInts("program", std::move(ints));
  node.attrs.SetFloats("immediates", std::move(imms));
  if (program.broadcast_rank > 0) node.attrs.SetInt("broadcast_rank", program.broadcast_rank);
  else node.attrs.Erase("broadcast_rank");
}

}  // namespace itkit::fused
