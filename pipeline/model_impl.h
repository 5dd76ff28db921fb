// The concrete SegmentationModel: what Load() resolved, plus the network and the
// thread pool the pipeline's own stages use.
#pragma once

#include <memory>
#include <mutex>

#include "itkit/pipeline.h"
#include "itkit/thread_pool.h"
#include "network.h"

namespace itkit::pipeline {

class PipelineModel final : public SegmentationModel {
 public:
  const ModelInfo& info() const override { return info_; }
  Result<SegmentReport> Segment(const SegmentRequest& request, const ProgressFn& progress,
                                const std::atomic<bool>* cancel) override;

  ModelInfo info_;
  LoadOptions options_;
  std::unique_ptr<Network> network_;
  std::unique_ptr<ThreadPool> pool_;
  int64_t static_batch_ = 0;  // the network's fixed batch dimension, 0 = dynamic
  // One window loop at a time per model: the session is not re-entrant and two
  // loops would only fight over the same cores / GPU memory.
  std::mutex device_mutex_;
  // Requests with forward_device "cpu" on a model whose
  // network runs on CUDA: a CPU session over the same ONNX file, made on first use.
  // cpu_mutex_ guards it and serialises its window loops.
  std::unique_ptr<Network> cpu_network_;
  std::mutex cpu_mutex_;
  Result<Network*> CpuNetworkLocked();  // caller holds cpu_mutex_
};

}  // namespace itkit::pipeline
