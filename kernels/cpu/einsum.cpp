// Einsum on the CPU (f32): one output element per task, an odometer over the
// contracted labels. Plain and general (diagonals, ellipsis broadcasting); the
// attention einsums of MONAI's UNETR are small enough for it.
#include <algorithm>

#include "cpu/cpu_ops.h"
#include "shape_infer/einsum_equation.h"

namespace itkit::cpu {
namespace {

struct EinsumLayout {
  std::vector<int64_t> out_sizes;                // per output label
  std::vector<int64_t> sum_sizes;                // per contracted label
  std::vector<std::vector<int64_t>> out_strides;  // [operand][output label]
  std::vector<std::vector<int64_t>> sum_strides;  // [operand][contracted label]
};

Result<std::unique_ptr<OpKernel>> CreateEinsum(const NodeSignature& sig) {
  std::vector<Shape> shapes;
  for (const ValueDesc& d : sig.inputs) {
    if (d.dtype != DType::kF32) return Unsupported("Einsum on the CPU supports float32 only, got ", DTypeName(d.dtype));
    shapes.push_back(d.shape);
  }
  ITKIT_ASSIGN_OR_RETURN(shape_rules::EinsumPlan plan,
                         shape_rules::ParseEinsum(sig.node->attrs.GetString("equation", ""), shapes));
  EinsumLayout layout;
  std::vector<char> sum_labels;
  for (char c : plan.labels)
    if (std::find(plan.output_labels.begin(), plan.output_labels.end(), c) == plan.output_labels.end())
      sum_labels.push_back(c);
  auto size_of = [&](char c) {
    return plan.label_sizes[static_cast<size_t>(std::find(plan.labels.begin(), plan.labels.end(), c) - plan.labels.begin())];
  };
  for (char c : plan.output_labels) layout.out_sizes.push_back(size_of(c));
  for (char c : sum_labels) layout.sum_sizes.push_back(size_of(c));
  for (size_t k = 0; k < shapes.size(); ++k) {
    const std::vector<int64_t> strides = ContiguousStrides(shapes[k]);
    // A label's stride in operand k: the sum over its dims carrying it (diagonals),
    // zero where the dim is absent or broadcast (size 1).
    auto stride_of = [&](char c) {
      int64_t s = 0;
      for (size_t d = 0; d < plan.operand_labels[k].size(); ++d)
        if (plan.operand_labels[k][d] == c && shapes[k][d] != 1) s += strides[d];
      return s;
    };
    std::vector<int64_t> os, ss;
    for (char c : plan.output_labels) os.push_back(stride_of(c));
    for (char c : sum_labels) ss.push_back(stride_of(c));
    layout.out_strides.push_back(std::move(os));
    layout.sum_strides.push_back(std::move(ss));
  }
  return MakeKernel([layout](KernelContext& ctx) {
    const size_t n_ops = ctx.inputs.size();
    float* out = ctx.outputs[0]->data<float>();
    const int64_t total = ctx.outputs[0]->size();
    int64_t sum_total = 1;
    for (int64_t s : layout.sum_sizes) sum_total *= s;
    ParallelFor(ctx.pool, total, 64, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> base(n_ops), offset(n_ops), idx(layout.sum_sizes.size());
      std::vector<const float*> data(n_ops);
      for (size_t k = 0; k < n_ops; ++k) data[k] = ctx.inputs[k]->data<float>();
      for (int64_t o = begin; o < end; ++o) {
        int64_t rem = o;
        std::fill(base.begin(), base.end(), 0);
        for (size_t a = layout.out_sizes.size(); a-- > 0;) {
          const int64_t v = rem % layout.out_sizes[a];
          rem /= layout.out_sizes[a];
          for (size_t k = 0; k < n_ops; ++k) base[k] += v * layout.out_strides[k][a];
        }
        std::fill(idx.begin(), idx.end(), 0);
        offset = base;
        double acc = 0.0;
        for (int64_t s = 0; s < sum_total; ++s) {
          double p = 1.0;
          for (size_t k = 0; k < n_ops; ++k) p *= data[k][offset[k]];
          acc += p;
          // Advance the odometer over contracted labels, updating offsets incrementally.
          for (size_t a = idx.size(); a-- > 0;) {
            if (++idx[a] < layout.sum_sizes[a]) {
              for (size_t k = 0; k < n_ops; ++k) offset[k] += layout.sum_strides[k][a];
              break;
            }
            for (size_t k = 0; k < n_ops; ++k) offset[k] -= (layout.sum_sizes[a] - 1) * layout.sum_strides[k][a];
            idx[a] = 0;
          }
        }
        out[o] = static_cast<float>(acc);
      }
    });
    return Status::Ok();
  });
}

}  // namespace

void AppendEinsumKernels(std::vector<CpuOpEntry>& table) { table.push_back({"", "Einsum", &CreateEinsum}); }

}  // namespace itkit::cpu
