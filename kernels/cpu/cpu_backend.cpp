#include "cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>

#include "cpu/cpu_ops.h"
#include "itkit/channels_last.h"
#include "itkit/op_table.h"

namespace itkit {
namespace cpu {

const std::vector<CpuOpEntry>& CpuOpTable() {
  static const std::vector<CpuOpEntry> table = [] {
    std::vector<CpuOpEntry> t;
    AppendElementwiseKernels(t);
    AppendTensorKernels(t);
    AppendReduceKernels(t);
    AppendConvKernels(t);
    AppendPoolKernels(t);
    AppendNormKernels(t);
    AppendResizeKernels(t);
    AppendMatMulKernels(t);
    AppendEinsumKernels(t);
    AppendFusedElementwiseKernels(t);
    return t;
  }();
  return table;
}

namespace {

const CpuOpEntry* FindEntry(const Node& node) {
  const bool onnx = IsOnnxDomain(node.domain);
  for (const CpuOpEntry& e : CpuOpTable()) {
    if (e.op_type != node.op_type) continue;
    if (onnx ? IsOnnxDomain(e.domain) : e.domain == node.domain) return &e;
  }
  return nullptr;
}

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  DeviceKind device() const override { return DeviceKind::kCpu; }

  bool Supports(const NodeSignature& sig, std::string* reason) const override {
    if (HasChannelsLast(sig)) {
      if (reason) *reason = "the CPU kernels read row-major data only";
      return false;
    }
    if (FindEntry(*sig.node)) return true;
    if (reason) *reason = "no CPU kernel for " + sig.node->op_type;
    return false;
  }

  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    const CpuOpEntry* e = FindEntry(*sig.node);
    if (!e) return Unsupported(sig.node->Describe(), ": no CPU kernel");
    if (HasChannelsLast(sig)) return Unsupported(sig.node->Describe(), ": channels-last data on the CPU");
    auto kernel = e->create(sig);
    if (!kernel.ok()) {
      Status s = kernel.status();
      if (s.message().rfind(sig.node->Describe(), 0) != 0) s = s.WithContext(sig.node->Describe());
      return s;
    }
    return kernel;
  }

  Result<DeviceBuffer> Allocate(size_t bytes) override {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* data = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!data) return OutOfMemory("CPU arena of ", bytes, " bytes");
    DeviceBuffer b;
    b.owner = std::shared_ptr<void>(data, [](void* p) { std::free(p); });
    b.data = data;
    b.bytes = bytes;
    return b;
  }

  Status CopyFromHost(const Tensor& host, Tensor& device) override { return Copy(host, device); }
  Status CopyToHost(const Tensor& device, Tensor& host) override { return Copy(device, host); }

 private:
  static Status Copy(const Tensor& from, Tensor& to) {
    if (from.bytes() != to.bytes()) return Internal("CPU copy size mismatch");
    if (from.bytes()) std::memcpy(to.raw(), from.raw(), from.bytes());
    return Status::Ok();
  }
};

}  // namespace
}  // namespace cpu

std::shared_ptr<Backend> CreateCpuBackend() {
  return std::make_shared<cpu::CpuBackend>();
}

}  // namespace itkit
