#include "cuda/layout_utils.h"

namespace itkit::cuda {

std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t k = 0; k < in.size() && k < out.size(); ++k) {
    const size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
    strides[o] = in[i] == 1 && out[o] != 1 ? 0 : stride;
    stride *= in[i];
  }
  return strides;
}

StridedPlan Collapse(StridedPlan plan) {
  StridedPlan out;
  out.strides.resize(plan.strides.size());
  // Walk from the innermost axis outwards, growing the current merged axis.
  for (size_t k = plan.dims.size(); k-- > 0;) {
    const int64_t d = plan.dims[k];
    if (d == 1) continue;
    bool merge = !out.dims.empty();
    for (size_t op = 0; merge && op < plan.strides.size(); ++op)
      merge = plan.strides[op][k] == out.strides[op].front() * out.dims.front();
    if (merge) {
      out.dims.front() *= d;
      continue;
    }
    out.dims.insert(out.dims.begin(), d);
    for (size_t op = 0; op < plan.strides.size(); ++op)
      out.strides[op].insert(out.strides[op].begin(), plan.strides[op][k]);
  }
  if (out.dims.empty()) {
    out.dims = {1};
    for (auto& s : out.strides) s = {0};
  }
  return out;
}

int64_t OffsetOf(const StridedPlan& plan, size_t op, int64_t index) {
  int64_t offset = 0;
  for (size_t k = plan.dims.size(); k-- > 0;) {
    offset += (index % plan.dims[k]) * plan.strides[op][k];
    index /= plan.dims[k];
  }
  return offset;
}

}  // namespace itkit::cuda
