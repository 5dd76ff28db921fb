// The register program of itkit.FusedElementwise (documented in runtime/op_table.cpp;
// built by runtime/passes/fuse_elementwise.cpp, run by kernels/cpu/fused_elementwise.cpp
// and kernels/cuda/fused_elementwise.cu).
//
// Registers 0 .. num_inputs-1 hold the node's inputs, each broadcast (numpy rules) to
// the output shape. Instruction i computes one elementwise op in f32 and writes register
// num_inputs + i (SSA: `dst` is always that register); the last instruction's register
// is the output. An operand is a register written before, or kImmediate: the
// instruction's first immediate (a scalar constant inlined by the pass). Unary ops read
// only `a` (`b` is written as 0) and take their parameters from the immediates.
//
// Attributes: `program` ints, 4 per instruction (opcode, dst, a, b); `immediates`
// floats, 2 per instruction (imm0, imm1); optional `broadcast_rank` int: the output has
// at least this rank (leading 1s), which inlined constants of higher rank than every
// input contribute to numpy broadcasting.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "itkit/graph.h"
#include "itkit/status.h"

namespace itkit::fused {

inline constexpr int kMaxInputs = 8;
inline constexpr int kMaxInstructions = 16;
inline constexpr int kMaxRegisters = kMaxInputs + kMaxInstructions;
inline constexpr int kImmediate = -1;

// The values are the attribute format: never renumber, only append.
enum class OpCode : int32_t {
  // unary: y = f(a)
  kRelu = 0,
  kLeakyRelu = 1,    // imm0 = alpha
  kSigmoid = 2,
  kTanh = 3,
  kErf = 4,
  kExp = 5,
  kLog = 6,
  kSqrt = 7,
  kAbs = 8,
  kNeg = 9,
  kReciprocal = 10,
  kFloor = 11,
  kCeil = 12,
  kRound = 13,       // half to even
  kSoftplus = 14,
  kSoftsign = 15,
  kElu = 16,         // imm0 = alpha
  kSelu = 17,        // imm0 = alpha, imm1 = gamma
  kHardSigmoid = 18, // imm0 = alpha, imm1 = beta
  kHardSwish = 19,
  kSin = 20,
  kCos = 21,
  kClip = 22,        // imm0 = min, imm1 = max
  // binary: y = f(a, b); either operand may be kImmediate (imm0)
  kAdd = 32,
  kSub = 33,
  kMul = 34,
  kDiv = 35,
  kPow = 36,
  kMax = 37,         // NaN in either operand gives NaN
  kMin = 38,
  kPRelu = 39,       // a < 0 ? a * b : a
};

constexpr bool IsBinary(OpCode op) { return static_cast<int32_t>(op) >= 32; }
bool IsValidOpCode(int64_t code);
const char* OpCodeName(OpCode op);

struct Instruction {
  OpCode op = OpCode::kRelu;
  int32_t dst = 0, a = 0, b = 0;
  float imm0 = 0.0f, imm1 = 0.0f;
};

struct Program {
  int num_inputs = 0;
  int broadcast_rank = 0;
  std::vector<Instruction> code;
  int result_register() const { return num_inputs + static_cast<int>(code.size()) - 1; }
};

// Reads and checks the program of an itkit.FusedElementwise node (its input count is
// num_inputs): limits, opcodes, SSA destinations, operands defined before use.
Result<Program> ParseProgram(const Node& node);
// Writes `program`'s attributes onto `node` (inputs are the caller's).
void WriteProgram(const Program& program, Node& node);

}  // namespace itkit::fused
