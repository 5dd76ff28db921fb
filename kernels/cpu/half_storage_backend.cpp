// CreateHalfStorageCpuBackend (itkit/devices.h): the CPU backend's kernels behind the
// planner's f16 storage. A kernel that takes the f16 signature itself (data movement,
// Cast, elementwise) gets it; any other runs its f32 kernel through the F16Adapter,
// which rounds each output to f16 exactly like a GPU kernel with f32 math and f16
// storage does.
#include "cpu/cpu_backend.h"
#include "cpu/f16_adapter.h"
#include "itkit/devices.h"

namespace itkit {
namespace cpu {
namespace {

// An f16-adapted kernel plus the f32 copies of the weights it was created from
// (a kernel may keep pointers to its signature's constants).
class KeepConstants final : public OpKernel {
 public:
  KeepConstants(std::unique_ptr<OpKernel> inner, std::vector<Tensor> constants)
      : inner_(std::move(inner)), constants_(std::move(constants)) {}
  size_t workspace_bytes() const override { return inner_->workspace_bytes(); }
  int in_place_input() const override { return inner_->in_place_input(); }
  Status Run(KernelContext& ctx) override { return inner_->Run(ctx); }

 private:
  std::unique_ptr<OpKernel> inner_;
  std::vector<Tensor> constants_;  // Tensor copies share their storage
};

class HalfStorageCpuBackend final : public Backend {
 public:
  HalfStorageCpuBackend() : cpu_(CreateCpuBackend()) {}
  std::string_view name() const override { return "cpu-f16"; }
  DeviceKind device() const override { return DeviceKind::kCpu; }
  bool prefers_half_storage() const override { return true; }

  bool Supports(const NodeSignature& sig, std::string* reason) const override { return cpu_->Supports(sig, reason); }

  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    auto direct = cpu_->CreateKernel(sig);
    if (direct.ok() || !HasHalf(sig)) return direct;
    NodeSignature s32 = sig;
    std::vector<bool> half_in(sig.inputs.size(), false), half_out(sig.outputs.size(), false);
    std::vector<Tensor> constants32;
    constants32.reserve(sig.inputs.size());
    for (size_t i = 0; i < sig.inputs.size(); ++i) {
      if (sig.inputs[i].dtype != DType::kF16) continue;
      half_in[i] = true;
      s32.inputs[i].dtype = DType::kF32;
      s32.inputs[i].constant = nullptr;
      if (const Tensor* c = sig.inputs[i].constant) {
        // Weights stay visible to the f32 kernel (prepacking), as their f16 values.
        ITKIT_ASSIGN_OR_RETURN(Tensor f32, Tensor::Allocate(DType::kF32, c->shape()));
        for (int64_t j = 0; j < c->size(); ++j) f32.data<float>()[j] = FloatFromHalfFast(c->data<uint16_t>()[j]);
        constants32.push_back(std::move(f32));
        s32.inputs[i].constant = &constants32.back();
      }
    }
    for (size_t o = 0; o < sig.outputs.size(); ++o) {
      if (sig.outputs[o].dtype != DType::kF16) continue;
      half_out[o] = true;
      s32.outputs[o].dtype = DType::kF32;
    }
    auto inner = cpu_->CreateKernel(s32);
    if (!inner.ok()) return direct.status();
    auto adapted = std::make_unique<F16Adapter>(std::move(inner).value(), half_in, half_out);
    return std::unique_ptr<OpKernel>(std::make_unique<KeepConstants>(std::move(adapted), std::move(constants32)));
  }

  Result<DeviceBuffer> Allocate(size_t bytes) override { return cpu_->Allocate(bytes); }
  Status CopyFromHost(const Tensor& host, Tensor& device) override { return cpu_->CopyFromHost(host, device); }
  Status CopyToHost(const Tensor& device, Tensor& host) override { return cpu_->CopyToHost(device, host); }

 private:
  static bool HasHalf(const NodeSignature& sig) {
    for (const auto* list : {&sig.inputs, &sig.outputs})
      for (const ValueDesc& d : *list)
        if (d.dtype == DType::kF16) return true;
    return false;
  }

  std::shared_ptr<Backend> cpu_;
};

}  // namespace
}  // namespace cpu

std::shared_ptr<Backend> CreateHalfStorageCpuBackend() { return std::make_shared<cpu::HalfStorageCpuBackend>(); }

}  // namespace itkit
