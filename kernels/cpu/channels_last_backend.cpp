// CreateChannelsLastCpuBackend (itkit/devices.h): a CPU backend that asks for
// channels-last storage (Backend::prefers_channels_last) and runs each channels-last
// node by converting its tagged inputs to row-major, running the ordinary kernel and
// converting its outputs back. It exists so the planner's
// layout logic (which nodes take the form, where Transposes go, graph outputs, copies)
// runs on any machine, with the CPU's numerics, against the same references as the GPU.
#include <cstring>

#include "cpu/align.h"
#include "cpu/cpu_backend.h"
#include "itkit/channels_last.h"
#include "itkit/devices.h"

namespace itkit {
namespace cpu {
namespace {

class ChannelsLastAdapter final : public OpKernel {
 public:
  ChannelsLastAdapter(std::unique_ptr<OpKernel> inner, const NodeSignature& sig) : inner_(std::move(inner)) {
    size_t offset = AlignUp(inner_->workspace_bytes());
    for (const auto* list : {&sig.inputs, &sig.outputs}) {
      std::vector<Slot>& slots = list == &sig.inputs ? inputs_ : outputs_;
      for (const ValueDesc& d : *list) {
        Slot s;
        s.channels_last = d.channels_last;
        s.dtype = d.dtype;
        s.shape = d.shape;
        if (d.channels_last) {
          s.offset = offset;
          offset += AlignUp(static_cast<size_t>(ElementCount(d.shape)) * DTypeSize(d.dtype));
        }
        slots.push_back(s);
      }
    }
    workspace_ = offset;
  }

  size_t workspace_bytes() const override { return workspace_; }
  // Safe to forward: a converted input is read whole before any output is written.
  int in_place_input() const override { return inner_->in_place_input(); }

  Status Run(KernelContext& ctx) override {
    if (ctx.workspace_bytes < workspace_) return Internal("channels-last adapter workspace too small");
    auto* ws = static_cast<uint8_t*>(ctx.workspace);
    std::vector<Tensor> row_major_in(inputs_.size()), row_major_out(outputs_.size());
    KernelContext inner = ctx;
    inner.workspace_bytes = inner_->workspace_bytes();
    for (size_t i = 0; i < inputs_.size() && i < ctx.inputs.size(); ++i) {
      const Slot& s = inputs_[i];
      if (!s.channels_last || !ctx.inputs[i]) continue;
      row_major_in[i] = Tensor::View(s.dtype, s.shape, ws + s.offset, DeviceKind::kCpu);
      FromChannelsLast(ctx.inputs[i]->raw(), row_major_in[i].raw(), s.shape, DTypeSize(s.dtype));
      inner.inputs[i] = &row_major_in[i];
    }
    for (size_t o = 0; o < outputs_.size() && o < ctx.outputs.size(); ++o) {
      const Slot& s = outputs_[o];
      if (!s.channels_last || !ctx.outputs[o]) continue;
      row_major_out[o] = Tensor::View(s.dtype, s.shape, ws + s.offset, DeviceKind::kCpu);
      inner.outputs[o] = &row_major_out[o];
    }
    ITKIT_RETURN_IF_ERROR(inner_->Run(inner));
    for (size_t o = 0; o < outputs_.size() && o < ctx.outputs.size(); ++o) {
      const Slot& s = outputs_[o];
      if (!s.channels_last || !ctx.outputs[o]) continue;
      ToChannelsLast(row_major_out[o].raw(), ctx.outputs[o]->raw(), s.shape, DTypeSize(s.dtype));
    }
    return Status::Ok();
  }

 private:
  struct Slot {
    bool channels_last = false;
    DType dtype = DType::kUndefined;
    Shape shape;
    size_t offset = 0;
  };
  std::unique_ptr<OpKernel> inner_;
  std::vector<Slot> inputs_, outputs_;
  size_t workspace_ = 0;
};

NodeSignature RowMajor(const NodeSignature& sig) {
  NodeSignature plain = sig;
  for (auto* list : {&plain.inputs, &plain.outputs})
    for (ValueDesc& d : *list) d.channels_last = false;
  return plain;
}

class ChannelsLastCpuBackend final : public Backend {
 public:
  explicit ChannelsLastCpuBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {
    name_ = std::string(inner_->name()) + "-cl";
  }
  std::string_view name() const override { return name_; }
  DeviceKind device() const override { return DeviceKind::kCpu; }
  bool prefers_half_storage() const override { return inner_->prefers_half_storage(); }
  bool prefers_channels_last() const override { return true; }

  bool Supports(const NodeSignature& sig, std::string* reason) const override {
    return inner_->Supports(RowMajor(sig), reason);
  }

  Result<std::unique_ptr<OpKernel>> CreateKernel(const NodeSignature& sig) override {
    if (!HasChannelsLast(sig)) return inner_->CreateKernel(sig);
    ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<OpKernel> inner, inner_->CreateKernel(RowMajor(sig)));
    return std::unique_ptr<OpKernel>(std::make_unique<ChannelsLastAdapter>(std::move(inner), sig));
  }

  Result<DeviceBuffer> Allocate(size_t bytes) override { return inner_->Allocate(bytes); }
  Status CopyFromHost(const Tensor& host, Tensor& device) override { return inner_->CopyFromHost(host, device); }
  Status CopyToHost(const Tensor& device, Tensor& host) override { return inner_->CopyToHost(device, host); }

 private:
  std::shared_ptr<Backend> inner_;
  std::string name_;
};

}  // namespace
}  // namespace cpu

std::shared_ptr<Backend> CreateChannelsLastCpuBackend(bool half_storage) {
  return std::make_shared<cpu::ChannelsLastCpuBackend>(half_storage ? CreateHalfStorageCpuBackend()
                                                                    : CreateCpuBackend());
}

}  // namespace itkit
