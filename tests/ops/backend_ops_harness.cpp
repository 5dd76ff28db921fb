#include "backend_ops_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/cpu_backend.h"
#include "itkit/channels_last.h"
#include "itkit/op_table.h"
#include "itkit/thread_pool.h"

namespace itkit::test::ops {
namespace {

bool Verbose() {
  const char* v = std::getenv("ITKIT_OPS_VERBOSE");
  return v && *v && std::strcmp(v, "0") != 0;
}

ThreadPool& Pool() {
  static ThreadPool pool(0);  // all cores: the CPU reference of big cases
  return pool;
}

// A host buffer of `bytes` 0xFF bytes: NaN as f32 and f16, -1 as integers.
Result<Tensor> PoisonHost(DType dtype, const Shape& shape) {
  ITKIT_ASSIGN_OR_RETURN(Tensor t, Tensor::Allocate(dtype, shape));
  if (t.bytes()) std::memset(t.raw(), 0xFF, t.bytes());
  return t;
}

struct Executed {
  std::vector<Tensor> outputs;  // host
  std::string unsupported;      // non-empty: the implementation declined the case
  bool no_channels_last_form = false;
};

// `t` (logical shape) in channels-last storage, still labelled with its logical shape.
Tensor StoredChannelsLast(const Tensor& t) {
  Tensor out = Tensor::Allocate(t.dtype(), t.shape()).value();
  ToChannelsLast(t.raw(), out.raw(), t.shape(), DTypeSize(t.dtype()));
  return out;
}

Result<Executed> Execute(const Impl& impl, const OpCase& c) {
  Executed result;
  const Node& node = c.node;
  std::vector<ValueDesc> descs(c.inputs.size());
  std::vector<const ValueDesc*> desc_ptrs(c.inputs.size(), nullptr);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (!c.inputs[i].defined()) continue;
    const bool is_const = i < c.constant.size() && c.constant[i];
    descs[i] = ValueDesc{c.inputs[i].dtype(), c.inputs[i].shape(), is_const ? &c.inputs[i] : nullptr};
    desc_ptrs[i] = &descs[i];
  }
  ShapeContext sctx(node, desc_ptrs, c.opset);
  ITKIT_RETURN_IF_ERROR(InferNodeShapes(sctx));
  NodeSignature sig;
  sig.node = &node;
  sig.inputs = descs;
  sig.outputs = sctx.outputs();
  sig.opset = c.opset;
  if (impl.channels_last) {
    ChannelsLastForm form;
    if (!ChannelsLastCandidate(sig, &form)) {
      result.no_channels_last_form = true;
      result.unsupported = "no channels-last form";
      return result;
    }
    for (size_t i = 0; i < sig.inputs.size(); ++i) sig.inputs[i].channels_last = form.inputs[i];
    for (size_t o = 0; o < sig.outputs.size(); ++o) sig.outputs[o].channels_last = form.outputs[o];
  }
  Backend& backend = *impl.backend;
  if (!impl.make) {
    std::string reason;
    if (!backend.Supports(sig, &reason)) {
      result.unsupported = reason.empty() ? "not supported" : reason;
      return result;
    }
  }
  auto made = impl.make ? impl.make(sig) : backend.CreateKernel(sig);
  if (!made.ok()) {
    if (made.status().code() != StatusCode::kUnsupported) return made.status();
    result.unsupported = made.status().message();
    return result;
  }
  std::unique_ptr<OpKernel> kernel = std::move(made).value();
  const bool on_host = backend.device() == DeviceKind::kCpu;

  std::vector<Tensor> inputs(c.inputs.size());
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (!c.inputs[i].defined()) continue;
    const Tensor host = sig.inputs[i].channels_last ? StoredChannelsLast(c.inputs[i]) : c.inputs[i];
    if (on_host) {
      inputs[i] = host;
      continue;
    }
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer buf, backend.Allocate(host.bytes()));
    inputs[i] = Tensor::Wrap(host.dtype(), host.shape(), buf.owner, buf.data, backend.device());
    ITKIT_RETURN_IF_ERROR(backend.CopyFromHost(host, inputs[i]));
  }
  std::vector<Tensor> outputs;
  for (size_t o = 0; o < node.outputs.size(); ++o) {
    const ValueDesc& d = sig.outputs[o];
    ITKIT_ASSIGN_OR_RETURN(Tensor poison, PoisonHost(d.dtype, d.shape));
    if (on_host) {
      outputs.push_back(std::move(poison));
      continue;
    }
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer buf, backend.Allocate(poison.bytes()));
    Tensor dev = Tensor::Wrap(d.dtype, d.shape, buf.owner, buf.data, backend.device());
    ITKIT_RETURN_IF_ERROR(backend.CopyFromHost(poison, dev));
    outputs.push_back(std::move(dev));
  }
  if (const int over = c.output_over_input ? kernel->in_place_input() : -1; over >= 0) {
    const size_t i = static_cast<size_t>(over);
    if (i >= inputs.size() || !inputs[i].defined() || sig.inputs[i].dtype != sig.outputs[0].dtype ||
        sig.inputs[i].shape != sig.outputs[0].shape || sig.inputs[i].channels_last != sig.outputs[0].channels_last)
      return Internal("in_place_input() names input ", over, ", which is not stored like output 0");
    if (on_host) {  // never write into the case's own tensor
      ITKIT_ASSIGN_OR_RETURN(Tensor copy, Tensor::Allocate(inputs[i].dtype(), inputs[i].shape()));
      std::memcpy(copy.raw(), inputs[i].raw(), inputs[i].bytes());
      inputs[i] = std::move(copy);
    }
    outputs[0] = inputs[i];  // the same memory
  }
  KernelContext kc;
  DeviceBuffer workspace;
  const size_t ws = kernel->workspace_bytes();
  if (ws) {
    ITKIT_ASSIGN_OR_RETURN(workspace, backend.Allocate(ws));
    ITKIT_ASSIGN_OR_RETURN(Tensor poison, PoisonHost(DType::kU8, {static_cast<int64_t>(ws)}));
    if (on_host) {
      std::memcpy(workspace.data, poison.raw(), ws);
    } else {
      Tensor dev = Tensor::View(DType::kU8, {static_cast<int64_t>(ws)}, workspace.data, backend.device());
      ITKIT_RETURN_IF_ERROR(backend.CopyFromHost(poison, dev));
    }
    kc.workspace = workspace.data;
    kc.workspace_bytes = ws;
  }
  for (const Tensor& t : inputs) kc.inputs.push_back(t.defined() ? &t : nullptr);
  for (Tensor& t : outputs) kc.outputs.push_back(&t);
  kc.pool = &Pool();
  ITKIT_RETURN_IF_ERROR(kernel->Run(kc));
  ITKIT_RETURN_IF_ERROR(backend.Synchronize());
  for (size_t o = 0; o < outputs.size(); ++o) {
    Tensor& t = outputs[o];
    Tensor host = t;
    if (!on_host) {
      ITKIT_ASSIGN_OR_RETURN(host, Tensor::Allocate(t.dtype(), t.shape()));
      ITKIT_RETURN_IF_ERROR(backend.CopyToHost(t, host));
    }
    if (sig.outputs[o].channels_last) {
      ITKIT_ASSIGN_OR_RETURN(Tensor row_major, Tensor::Allocate(host.dtype(), host.shape()));
      FromChannelsLast(host.raw(), row_major.raw(), host.shape(), DTypeSize(host.dtype()));
      host = std::move(row_major);
    }
    result.outputs.push_back(std::move(host));
  }
  return result;
}

bool HasHalfInput(const OpCase& c) {
  for (const Tensor& t : c.inputs)
    if (t.defined() && t.dtype() == DType::kF16) return true;
  return false;
}

Tensor ToF32(const Tensor& t) {
  if (!t.defined() || t.dtype() != DType::kF16) return t;
  Tensor out = Tensor::Allocate(DType::kF32, t.shape()).value();
  for (int64_t i = 0; i < t.size(); ++i) out.data<float>()[i] = HalfToFloat(t.data<uint16_t>()[i]);
  return out;
}

std::string Describe(const Status& s) { return std::string(StatusCodeName(s.code())) + ": " + s.message(); }

// Fails with the first problem, or passes with the error.
CaseResult Compare(const Tensor& out_raw, const Tensor& ref_raw, double tol, double max_mismatch) {
  CaseResult r;
  const Tensor out = ToF32(out_raw), ref = ToF32(ref_raw);
  if (out.shape() != ref.shape()) {
    r.outcome = Outcome::kFail;
    r.detail = "shape " + ShapeToString(out.shape()) + " vs reference " + ShapeToString(ref.shape());
    return r;
  }
  const int64_t n = ref.size();
  if (!IsFloat(ref.dtype())) {
    int64_t differ = 0;
    for (int64_t i = 0; i < n; ++i) differ += out.GetAsInt64(i) != ref.GetAsInt64(i);
    r.error = n ? static_cast<double>(differ) / static_cast<double>(n) : 0.0;
    if (r.error > max_mismatch) {
      r.outcome = Outcome::kFail;
      r.detail = std::to_string(differ) + " of " + std::to_string(n) + " elements differ";
    }
    return r;
  }
  double diff2 = 0.0, ref2 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = out.data<float>()[i], b = ref.data<float>()[i];
    if (!std::isfinite(b)) continue;
    if (!std::isfinite(a)) {
      r.outcome = Outcome::kFail;
      r.detail = "element " + std::to_string(i) + " is " + std::to_string(a) + " (unwritten or overflow), reference " +
                 std::to_string(b);
      return r;
    }
    diff2 += (a - b) * (a - b);
    ref2 += b * b;
  }
  r.error = std::sqrt(diff2) / std::max(std::sqrt(ref2), 1e-12);
  if (r.error > tol) {
    r.outcome = Outcome::kFail;
    char buf[96];
    std::snprintf(buf, sizeof(buf), "normalised error %.3g > %.3g", r.error, tol);
    r.detail = buf;
  }
  return r;
}

}  // namespace

CaseResult RunCase(const Impl& impl, const Impl& ref, const OpCase& c) {
  CaseResult r;
  const bool half = HasHalfInput(c);
  OpCase ref_case = c;
  if (half)
    for (Tensor& t : ref_case.inputs) t = ToF32(t);
  auto expected = Execute(ref, ref_case);
  if (!expected.ok() || !expected->unsupported.empty()) {
    r.outcome = Outcome::kSkip;
    r.detail = "reference " + ref.name + " cannot run it: " +
               (expected.ok() ? expected->unsupported : Describe(expected.status()));
    return r;
  }
  auto got = Execute(impl, c);
  if (!got.ok()) {
    r.outcome = Outcome::kFail;
    r.detail = Describe(got.status());
    return r;
  }
  if (!got->unsupported.empty()) {
    // A backend that silently declined everything would otherwise pass.
    // A declined channels-last form is legitimate (the planner then offers the row-major
    // one, which the plain run checks); the channels-last tests count their passes.
    const bool delegated = std::find(impl.delegated_ops.begin(), impl.delegated_ops.end(), c.node.op_type) !=
                           impl.delegated_ops.end();
    r.outcome = impl.require_support && c.core && !impl.channels_last && !delegated ? Outcome::kFail : Outcome::kSkip;
    r.detail = "unsupported: " + got->unsupported;
    return r;
  }
  double tol = c.matrix ? std::max(c.tol, impl.matrix_tol) : c.tol;
  if (half) tol = std::max(tol, c.matrix ? 1e-2 : 5e-3);  // f16 rounding of inputs and outputs
  const double mismatch = std::max(c.max_mismatch, half ? 1e-3 : impl.mismatch_tol);
  for (size_t o = 0; o < got->outputs.size() && o < expected->outputs.size(); ++o) {
    if (c.node.outputs[o].empty()) continue;
    CaseResult one = Compare(got->outputs[o], expected->outputs[o], tol, mismatch);
    r.error = std::max(r.error, one.error);
    if (one.outcome == Outcome::kFail) {
      r.outcome = Outcome::kFail;
      r.detail = "output " + std::to_string(o) + ": " + one.detail;
      return r;
    }
  }
  return r;
}

Summary RunAll(const Impl& impl, const Impl& ref, const std::vector<OpCase>& cases) {
  Summary s;
  const bool verbose = Verbose();
  for (const OpCase& c : cases) {
    const CaseResult r = RunCase(impl, ref, c);
    switch (r.outcome) {
      case Outcome::kPass: ++s.passed; break;
      case Outcome::kFail:
        ++s.failed;
        s.failures.push_back(c.name + ": " + r.detail);
        break;
      case Outcome::kSkip: ++s.skipped; break;
    }
    if (verbose || r.outcome == Outcome::kFail) {
      const char* tag = r.outcome == Outcome::kPass ? "ok  " : r.outcome == Outcome::kFail ? "FAIL" : "skip";
      std::printf("  %s %-10s %-70s err %.2e %s\n", tag, impl.name.c_str(), c.name.c_str(), r.error, r.detail.c_str());
    }
  }
  std::printf("%s vs %s: %d passed, %d failed, %d skipped\n", impl.name.c_str(), ref.name.c_str(), s.passed, s.failed,
              s.skipped);
  std::fflush(stdout);
  return s;
}

const std::vector<OpCase>& CasesFromEnv() {
  static const std::vector<OpCase> cases = FilterFromEnv(MakeCases(SeedFromEnv()));
  return cases;
}

Impl CpuBackendImpl() {
  Impl i;
  i.name = "cpu";
  i.backend = CreateCpuBackend();
  i.matrix_tol = 1e-4;
  return i;
}

uint32_t SeedFromEnv() {
  const char* v = std::getenv("ITKIT_OPS_SEED");
  return v && *v ? static_cast<uint32_t>(std::strtoul(v, nullptr, 10)) : 20261126u;
}

std::vector<OpCase> FilterFromEnv(std::vector<OpCase> cases) {
  const char* f = std::getenv("ITKIT_OPS_FILTER");
  if (!f || !*f) return cases;
  std::vector<OpCase> kept;
  for (OpCase& c : cases)
    if (c.name.find(f) != std::string::npos) kept.push_back(std::move(c));
  return kept;
}

}  // namespace itkit::test::ops
