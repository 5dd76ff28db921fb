#include "network.h"

#include <mutex>

#include "itkit/devices.h"
#include "itkit/log.h"
#include "itkit/session.h"

namespace itkit::pipeline {
namespace {

class SessionNetwork final : public Network {
 public:
  SessionNetwork(std::unique_ptr<Session> session, std::string device, std::shared_ptr<Backend> backend)
      : session_(std::move(session)), device_(std::move(device)), backend_(std::move(backend)) {}
  std::string device() const override { return device_; }
  std::shared_ptr<Backend> device_backend() const override { return backend_; }

  Result<Tensor> Forward(const Tensor& input) override { return Run(input, false); }
  Result<Tensor> ForwardKeepingLogitsOnDevice(const Tensor& input) override { return Run(input, backend_ != nullptr); }
  bool accepts_device_input() const override {
    // An f16 model's input is converted on the host (Run), so it takes host batches.
    return backend_ != nullptr && (session_->inputs().empty() || session_->inputs()[0].dtype != DType::kF16);
  }

 private:
  Result<Tensor> Run(const Tensor& input, bool logits_on_device) {
    Tensor feed = input;
    if (input.device() == DeviceKind::kCpu && !session_->inputs().empty() &&
        session_->inputs()[0].dtype == DType::kF16) {
      // A network exported in half precision takes half inputs.
      ITKIT_ASSIGN_OR_RETURN(feed, Tensor::Allocate(DType::kF16, input.shape()));
      const float* f = input.data<float>();
      auto* h = feed.data<uint16_t>();
      for (int64_t i = 0; i < input.size(); ++i) h[i] = FloatToHalf(f[i]);
    }
    RunOptions run_options;
    run_options.outputs_on_device = logits_on_device;
    ITKIT_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, session_->Run(std::vector<Tensor>{feed}, run_options));
    if (outputs.empty()) return Internal("the network returned no outputs");
    Tensor out = std::move(outputs.front());
    const bool on_device = out.device() != DeviceKind::kCpu;
    if (out.dtype() == DType::kF16 && !on_device) {
      // An fp16 network: widen once here so accumulation is float32 everywhere.
      ITKIT_ASSIGN_OR_RETURN(Tensor wide, Tensor::Allocate(DType::kF32, out.shape()));
      const auto* h = out.data<uint16_t>();
      float* f = wide.data<float>();
      for (int64_t i = 0; i < out.size(); ++i) f[i] = HalfToFloat(h[i]);
      out = std::move(wide);
    }
    if (out.dtype() != DType::kF32 && !(on_device && out.dtype() == DType::kF16))
      return InvalidArgument("the network's output is ", DTypeName(out.dtype()), ", expected float logits");
    const Shape& in = input.shape();
    const Shape& s = out.shape();
    if (s.size() != 5 || s[0] != in[0] || s[2] != in[2] || s[3] != in[3] || s[4] != in[4])
      return InvalidArgument("the network's output ", ShapeToString(s), " does not match its input ",
                             ShapeToString(in), ": expected (N, classes, Z, Y, X) logits of the input's size");
    return out;
  }

  std::unique_ptr<Session> session_;
  std::string device_;
  std::shared_ptr<Backend> backend_;
};

class SyntheticNetwork final : public Network {
 public:
  explicit SyntheticNetwork(int classes) : classes_(classes) {}
  std::string device() const override { return "cpu"; }
  Result<Tensor> Forward(const Tensor& input) override {
    const Shape& in = input.shape();
    const int64_t n = in[0], channels = in[1], voxels = in[2] * in[3] * in[4];
    ITKIT_ASSIGN_OR_RETURN(Tensor out, Tensor::Allocate(DType::kF32, {n, classes_, in[2], in[3], in[4]}));
    for (int64_t b = 0; b < n; ++b) {
      const float* x = input.data<float>() + b * channels * voxels;
      float* y = out.data<float>() + b * classes_ * voxels;
      for (int c = 0; c < classes_; ++c) {
        const float k = static_cast<float>(c), off = k / (2.0f * static_cast<float>(classes_));
        float* yc = y + c * voxels;
        for (int64_t i = 0; i < voxels; ++i) yc[i] = k * (x[i] - off);
      }
    }
    return out;
  }

 private:
  int classes_;
};

}  // namespace

Result<std::unique_ptr<Network>> CreateSessionNetwork(Model model, const NetworkOptions& options) {
  SessionOptions so;
  so.threads = options.threads;
  std::string device = "cpu";
  std::shared_ptr<Backend> backend;
  if (options.forward_device != "cpu") {
    CudaBackendOptions co;
    co.fp16 = options.fp16;
    co.tuning_cache_dir = options.tuning_cache_dir;
    auto cuda = CreateCudaBackend(co);
    if (cuda.ok()) {
      so.backends.push_back(*cuda);
      backend = *cuda;
      device = "cuda";
    } else {
      static std::once_flag logged;
      std::call_once(logged, [&] {
        LogWarning("CUDA unavailable (", cuda.status().message(), "): the network runs on the CPU");
      });
    }
  }
  ITKIT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(std::move(model), so));
  return std::unique_ptr<Network>(new SessionNetwork(std::move(session), device, std::move(backend)));
}

std::unique_ptr<Network> CreateSyntheticNetwork(int classes) {
  return std::make_unique<SyntheticNetwork>(classes);
}

}  // namespace itkit::pipeline
