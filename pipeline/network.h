// The network behind the sliding window: a Session over an ONNX model, or a built-in
// stand-in for benchmarking the pipeline around it.
#pragma once

#include <memory>
#include <string>

#include "itkit/backend.h"
#include "itkit/graph.h"
#include "itkit/tensor.h"

namespace itkit::pipeline {

class Network {
 public:
  virtual ~Network() = default;
  virtual std::string device() const = 0;
  // The device backend the network runs on (nullptr on the CPU): a CUDA
  // accumulator shares its GPU, stream and handles instead of making its own.
  virtual std::shared_ptr<Backend> device_backend() const { return nullptr; }
  // (n, channels, patch) float32 on the host → (n, classes, patch) float32 logits
  // on the host. kOutOfMemory / kResourceExhausted mean "try a smaller batch".
  virtual Result<Tensor> Forward(const Tensor& input) = 0;
  // Same, but logits a device produced may stay in its memory (f32 or f16,
  // Tensor::device() != kCpu), valid until the next call: for an accumulator on
  // that device, saving the round trip through the host.
  virtual Result<Tensor> ForwardKeepingLogitsOnDevice(const Tensor& input) { return Forward(input); }
  // Whether ForwardKeepingLogitsOnDevice takes `input` in device_backend()'s memory
  // (uploaded by the caller, e.g. on a copy queue while the previous batch runs).
  virtual bool accepts_device_input() const { return false; }
};

struct NetworkOptions {
  std::string forward_device = "auto";  // "auto" | "cpu" | "cuda"
  bool fp16 = false;
  int threads = 0;
  std::string tuning_cache_dir;
};

// Takes the model (its first graph output is the logits). Falls back to the CPU when
// CUDA is asked for but unavailable, logging the reason once per process.
Result<std::unique_ptr<Network>> CreateSessionNetwork(Model model, const NetworkOptions& options);

// logits[c] = c * (x - c / (2 * classes)) of input channel 0: argmax bins a [0, 1]
// input into `classes` levels. Costs one pass over the output.
std::unique_ptr<Network> CreateSyntheticNetwork(int classes);

}  // namespace itkit::pipeline
