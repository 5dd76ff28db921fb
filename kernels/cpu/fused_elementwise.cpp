// itkit.FusedElementwise on the CPU: the register program (itkit/fused_elementwise.h)
// interpreted over blocks of up to 256 output elements. Each input is made a block
// first (a pointer into the input when its shape is the output's, a splat when it has
// one element, an index walk for any other broadcast), then every instruction runs as
// one plain loop over the block, so the interpreter's switch costs once per block and
// the loops vectorise. The scalar math is that of the CPU's unfused ops (elementwise.cpp,
// elementwise_binary.cpp), so fused and unfused graphs agree to rounding. f16 runs
// through the f32 kernel (f16_adapter.h).
#include <cmath>
#include <vector>

#include "cpu/elementwise_internal.h"
#include "itkit/fused_elementwise.h"

namespace itkit::cpu {
namespace {

using fused::OpCode;

constexpr int64_t kBlock = 256;

inline float Clamp01(float v) {
  const float lo = v < 0.0f ? 0.0f : v;
  return lo > 1.0f ? 1.0f : lo;
}

// d[j] = f(a[j]) / f(a[j], b[j]) over one block.
template <typename F>
inline void Map1(float* d, const float* a, int64_t n, F f) {
  for (int64_t j = 0; j < n; ++j) d[j] = f(a[j]);
}
template <typename F>
inline void Map2(float* d, const float* a, const float* b, int64_t n, F f) {
  for (int64_t j = 0; j < n; ++j) d[j] = f(a[j], b[j]);
}

void RunInstruction(const fused::Instruction& ins, float* d, const float* a, const float* b, int64_t n) {
  const float p = ins.imm0, q = ins.imm1;
  switch (ins.op) {
    case OpCode::kRelu: return Map1(d, a, n, [](float x) { return x < 0.0f ? 0.0f : x; });
    case OpCode::kLeakyRelu:
      return Map1(d, a, n, [p](float x) { return (x < 0.0f ? 0.0f : x) + p * (x < 0.0f ? x : 0.0f); });
    case OpCode::kSigmoid: return Map1(d, a, n, [](float x) { return 1.0f / (1.0f + std::exp(-x)); });
    case OpCode::kTanh: return Map1(d, a, n, [](float x) { return std::tanh(x); });
    case OpCode::kErf: return Map1(d, a, n, [](float x) { return std::erf(x); });
    case OpCode::kExp: return Map1(d, a, n, [](float x) { return std::exp(x); });
    case OpCode::kLog: return Map1(d, a, n, [](float x) { return std::log(x); });
    case OpCode::kSqrt: return Map1(d, a, n, [](float x) { return std::sqrt(x); });
    case OpCode::kAbs: return Map1(d, a, n, [](float x) { return std::fabs(x); });
    case OpCode::kNeg: return Map1(d, a, n, [](float x) { return -x; });
    case OpCode::kReciprocal: return Map1(d, a, n, [](float x) { return 1.0f / x; });
    case OpCode::kFloor: return Map1(d, a, n, [](float x) { return std::floor(x); });
    case OpCode::kCeil: return Map1(d, a, n, [](float x) { return std::ceil(x); });
    case OpCode::kRound: return Map1(d, a, n, [](float x) { return std::nearbyint(x); });
    case OpCode::kSoftplus:
      return Map1(d, a, n, [](float x) { return x > 0.0f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); });
    case OpCode::kSoftsign: return Map1(d, a, n, [](float x) { return x / (1.0f + std::fabs(x)); });
    case OpCode::kElu: return Map1(d, a, n, [p](float x) { return x >= 0.0f ? x : p * std::expm1(x); });
    case OpCode::kSelu:
      return Map1(d, a, n, [p, q](float x) { return x > 0.0f ? q * x : q * p * std::expm1(x); });
    case OpCode::kHardSigmoid: return Map1(d, a, n, [p, q](float x) { return Clamp01(p * x + q); });
    case OpCode::kHardSwish: return Map1(d, a, n, [](float x) { return x * Clamp01(x / 6.0f + 0.5f); });
    case OpCode::kSin: return Map1(d, a, n, [](float x) { return std::sin(x); });
    case OpCode::kCos: return Map1(d, a, n, [](float x) { return std::cos(x); });
    case OpCode::kClip:  // max then min, as Clip: NaN stays NaN
      return Map1(d, a, n, [p, q](float x) {
        const float y = x < p ? p : x;
        return q < y ? q : y;
      });
    case OpCode::kAdd: return Map2(d, a, b, n, [](float x, float y) { return x + y; });
    case OpCode::kSub: return Map2(d, a, b, n, [](float x, float y) { return x - y; });
    case OpCode::kMul: return Map2(d, a, b, n, [](float x, float y) { return x * y; });
    case OpCode::kDiv: return Map2(d, a, b, n, [](float x, float y) { return x / y; });
    case OpCode::kPow:  // x^2 as a product, like the unfused Pow with a constant exponent 2
      return Map2(d, a, b, n, [](float x, float y) { return y == 2.0f ? x * x : std::pow(x, y); });
    case OpCode::kMax: return Map2(d, a, b, n, [](float x, float y) { return (x > y || x != x) ? x : y; });
    case OpCode::kMin: return Map2(d, a, b, n, [](float x, float y) { return (x < y || x != x) ? x : y; });
    case OpCode::kPRelu:
      return Map2(d, a, b, n, [](float x, float y) { return (x < 0.0f ? 0.0f : x) + y * (x < 0.0f ? x : 0.0f); });
  }
}

enum class Access { kSame, kSplat, kWalk };

struct InputPlan {
  Access access = Access::kSame;
  std::vector<int64_t> strides;  // kWalk: per output dim (0 where broadcast)
};

struct Plan {
  fused::Program program;
  Shape out;
  std::vector<InputPlan> inputs;
};

Status Run(const Plan& plan, KernelContext& ctx) {
  const fused::Program& prog = plan.program;
  const int num_in = prog.num_inputs;
  const int num_regs = num_in + static_cast<int>(prog.code.size());
  const int rank = static_cast<int>(plan.out.size());
  float* y = ctx.outputs[0]->data<float>();
  const int64_t total = ctx.outputs[0]->size();
  ParallelFor(ctx.pool, total, 1 << 14, [&](int64_t begin, int64_t end) {
    // One block of storage per register, plus one for the immediate operand.
    std::vector<float> storage(static_cast<size_t>((num_regs + 1) * kBlock));
    auto block_of = [&](int r) { return storage.data() + static_cast<size_t>(r) * kBlock; };
    float* imm_block = block_of(num_regs);
    const float* reg[fused::kMaxRegisters] = {};
    for (int64_t start = begin; start < end; start += kBlock) {
      const int64_t n = std::min(kBlock, end - start);
      for (int k = 0; k < num_in; ++k) {
        const float* src = ctx.inputs[static_cast<size_t>(k)]->data<float>();
        const InputPlan& ip = plan.inputs[static_cast<size_t>(k)];
        float* buf = block_of(k);
        if (ip.access == Access::kSame) {
          reg[k] = src + start;
          continue;
        }
        if (ip.access == Access::kSplat) {
          for (int64_t j = 0; j < n; ++j) buf[j] = src[0];
        } else {
          // Coordinates of `start` in the output, then an odometer over the block.
          int64_t coord[kMaxRank] = {}, off = 0, rem = start;
          for (int d = rank - 1; d >= 0; --d) {
            coord[d] = rem % plan.out[static_cast<size_t>(d)];
            rem /= plan.out[static_cast<size_t>(d)];
            off += coord[d] * ip.strides[static_cast<size_t>(d)];
          }
          for (int64_t j = 0; j < n; ++j) {
            buf[j] = src[off];
            for (int d = rank - 1; d >= 0; --d) {
              off += ip.strides[static_cast<size_t>(d)];
              if (++coord[d] < plan.out[static_cast<size_t>(d)]) break;
              off -= coord[d] * ip.strides[static_cast<size_t>(d)];
              coord[d] = 0;
            }
          }
        }
        reg[k] = buf;
      }
      for (size_t i = 0; i < prog.code.size(); ++i) {
        const fused::Instruction& ins = prog.code[i];
        const bool last = i + 1 == prog.code.size();
        float* dst = last ? y + start : block_of(ins.dst);
        if (ins.a == fused::kImmediate || ins.b == fused::kImmediate)
          for (int64_t j = 0; j < n; ++j) imm_block[j] = ins.imm0;
        const float* a = ins.a == fused::kImmediate ? imm_block : reg[ins.a];
        const float* b = !fused::IsBinary(ins.op) ? a : (ins.b == fused::kImmediate ? imm_block : reg[ins.b]);
        RunInstruction(ins, dst, a, b, n);
        reg[ins.dst] = dst;
      }
    }
  });
  return Status::Ok();
}

Result<std::unique_ptr<OpKernel>> CreateFusedElementwise(const NodeSignature& sig) {
  ITKIT_ASSIGN_OR_RETURN(fused::Program program, fused::ParseProgram(*sig.node));
  Plan plan;
  plan.out = sig.outputs[0].shape;
  if (sig.outputs[0].dtype != DType::kF32) return UnsupportedDType(sig, sig.outputs[0].dtype);
  if (sig.inputs.size() != static_cast<size_t>(program.num_inputs))
    return InvalidArgument(sig.node->Describe(), ": ", sig.inputs.size(), " inputs, the program reads ",
                           program.num_inputs);
  for (const ValueDesc& in : sig.inputs) {
    if (in.dtype != DType::kF32) return UnsupportedDType(sig, in.dtype);
    if (in.shape.size() > plan.out.size())
      return InvalidArgument(sig.node->Describe(), ": input ", ShapeToString(in.shape), " does not broadcast to ",
                             ShapeToString(plan.out));
    InputPlan ip;
    if (in.shape == plan.out) {
      ip.access = Access::kSame;
    } else if (ElementCount(in.shape) == 1) {
      ip.access = Access::kSplat;
    } else {
      ip.access = Access::kWalk;
      ip.strides = BroadcastStrides(in.shape, plan.out);
    }
    plan.inputs.push_back(std::move(ip));
  }
  plan.program = std::move(program);
  return MakeKernel([plan = std::move(plan)](KernelContext& ctx) { return Run(plan, ctx); });
}

}  // namespace

void AppendFusedElementwiseKernels(std::vector<CpuOpEntry>& table) {
  table.push_back({"itkit", "FusedElementwise", &WithF16<&CreateFusedElementwise>});
}

}  // namespace itkit::cpu
