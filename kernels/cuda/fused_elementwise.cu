// itkit.FusedElementwise on the GPU: one launch, one thread per output element
// (grid-stride), interpreting the register program (itkit/fused_elementwise.h) from a
// struct passed by value; f32 math (fused_math.h), f32 or f16 storage. Inputs are read
// through their broadcast strides in a StridedPlan (layout_utils.h: adjacent dims merged
// where every input allows), so when every input has the output's shape or one element
// the kernel sees one dim and skips the index decode.
//
// The registers are a per-thread array indexed at run time, so they live in local
// memory (L1); fine for chains of a few ops, which are memory-bound anyway.
#include "cuda/fused_math.h"
#include "cuda/strided.cuh"

namespace itkit::cuda {
namespace {

constexpr int kInputs = fused::kMaxInputs;

struct FusedArgs {
  int num_inputs = 0, num_code = 0;
  int8_t code[fused::kMaxInstructions][4] = {};  // opcode, dst, a, b (-1: the immediate)
  float imm[fused::kMaxInstructions][2] = {};
  const void* in[kInputs] = {};
};

template <typename T, bool kFlat>
__global__ void FusedElementwiseKernel(FusedArgs p, StridedArgs<kInputs> s, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[kInputs];
    if constexpr (kFlat) {
#pragma unroll
      for (int k = 0; k < kInputs; ++k) off[k] = i * s.strides[k][0];
    } else {
      DecodeOffsets(s, i, off);
    }
    float r[fused::kMaxRegisters];
#pragma unroll
    for (int k = 0; k < kInputs; ++k)
      if (k < p.num_inputs) r[k] = ToF(static_cast<const T*>(p.in[k])[off[k]]);
    for (int c = 0; c < p.num_code; ++c) {
      const int a = p.code[c][2], b = p.code[c][3];
      const float va = a < 0 ? p.imm[c][0] : r[a];
      const float vb = b < 0 ? p.imm[c][0] : r[b];
      r[p.code[c][1]] = FusedOp(static_cast<fused::OpCode>(p.code[c][0]), va, vb, p.imm[c][0], p.imm[c][1]);
    }
    y[i] = FromF<T>(r[p.num_inputs + p.num_code - 1]);
  }
}

bool FusedSupports(const NodeSignature& sig, const CudaContext&, std::string* reason) {
  auto program = fused::ParseProgram(*sig.node);
  if (!program.ok()) return Reject(reason, program.status().message());
  if (sig.inputs.size() != static_cast<size_t>(program->num_inputs)) return Reject(reason, "input count");
  const DType dt = sig.outputs[0].dtype;
  if (!IsF32OrF16(dt)) return Reject(reason, "dtype ", DTypeName(dt));
  for (const ValueDesc& d : sig.inputs)
    if (d.dtype != dt) return Reject(reason, "inputs of another dtype than the output's (", DTypeName(d.dtype), ")");
  if (sig.outputs[0].shape.size() > static_cast<size_t>(kMaxDims)) return Reject(reason, "rank > ", kMaxDims);
  return true;
}

Result<std::unique_ptr<OpKernel>> CreateFused(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  ITKIT_ASSIGN_OR_RETURN(fused::Program program, fused::ParseProgram(*sig.node));
  if (sig.inputs.size() != static_cast<size_t>(program.num_inputs)) return Internal("FusedElementwise input count");
  FusedArgs args;
  args.num_inputs = program.num_inputs;
  args.num_code = static_cast<int>(program.code.size());
  for (size_t c = 0; c < program.code.size(); ++c) {
    const fused::Instruction& ins = program.code[c];
    args.code[c][0] = static_cast<int8_t>(ins.op);
    args.code[c][1] = static_cast<int8_t>(ins.dst);
    args.code[c][2] = static_cast<int8_t>(ins.a);
    args.code[c][3] = static_cast<int8_t>(ins.b);
    args.imm[c][0] = ins.imm0;
    args.imm[c][1] = ins.imm1;
  }
  const Shape& out = sig.outputs[0].shape;
  StridedPlan plan;
  plan.dims = out;
  for (int k = 0; k < kInputs; ++k)  // unused operands: stride 0 everywhere
    plan.strides.push_back(k < program.num_inputs ? BroadcastStrides(sig.inputs[static_cast<size_t>(k)].shape, out)
                                                  : std::vector<int64_t>(out.size(), 0));
  plan = Collapse(std::move(plan));
  const bool flat = plan.dims.size() == 1;
  ITKIT_ASSIGN_OR_RETURN(StridedArgs<kInputs> strided, ToArgs<kInputs>(plan));
  const int64_t n = ElementCount(out);
  const DType dtype = sig.outputs[0].dtype;
  return MakeKernel(ctx, [=, c = ctx.get()](KernelContext& kc) -> Status {
    if (n == 0) return Status::Ok();
    FusedArgs a = args;
    for (int k = 0; k < a.num_inputs; ++k) a.in[k] = kc.inputs[static_cast<size_t>(k)]->raw();
    return DispatchFloat(dtype, [&]<typename T>() -> Status {
      T* y = kc.outputs[0]->data<T>();
      if (flat) {
        FusedElementwiseKernel<T, true><<<GridFor(n, *c), kThreads, 0, c->stream>>>(a, strided, y, n);
      } else {
        FusedElementwiseKernel<T, false><<<GridFor(n, *c), kThreads, 0, c->stream>>>(a, strided, y, n);
      }
      ITKIT_CUDA_CHECK_LAUNCH("FusedElementwiseKernel");
      return Status::Ok();
    });
  });
}

}  // namespace

void AppendFusedElementwiseOps(std::vector<CudaOpEntry>& table) {
  table.push_back({kItkitDomain, "FusedElementwise", FusedSupports, CreateFused});
}

}  // namespace itkit::cuda
