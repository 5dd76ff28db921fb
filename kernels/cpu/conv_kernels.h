// The conv family on the CPU: Conv, ConvTranspose and itkit.FusedConv.
// conv_reference.cpp holds the plain loops (the definition tests compare against,
// and the fallback); conv_onednn.cpp the fast path through oneDNN primitives.
#pragma once

#include <array>
#include <memory>

#include "cpu/fused_activation.h"
#include "itkit/backend.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

// Geometry of one convolution, spatial axes padded to 3 at the front with extent 1
// (1-D and 2-D convs run through the same 3-D loops).
struct ConvParams {
  bool transpose = false;
  int spatial = 0;  // 1, 2 or 3 as in the model
  int64_t batch = 0, in_channels = 0, out_channels = 0, group = 1;
  std::array<int64_t, 3> in{1, 1, 1}, out{1, 1, 1}, kernel{1, 1, 1}, stride{1, 1, 1}, dilation{1, 1, 1};
  std::array<int64_t, 3> pad_begin{0, 0, 0}, pad_end{0, 0, 0}, output_padding{0, 0, 0};
  bool has_bias = false;
  Activation act;

  int64_t in_spatial() const { return in[0] * in[1] * in[2]; }
  int64_t out_spatial() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
  // Multiply-accumulates of the whole op (for benchmarks).
  double Macs() const;
};

// Reads attributes/shapes of a Conv/FusedConv (transpose = false) or ConvTranspose
// node; checks the result against the planned output shape.
Result<ConvParams> MakeConvParams(const NodeSignature& sig, bool transpose);

// Plain loops: y = act(conv(x, w) + b). `b` may be null. Weights in ONNX layout.
void ConvReference(const ConvParams& p, const float* x, const float* w, const float* b, float* y,
                   ThreadPool* pool);
void ConvTransposeReference(const ConvParams& p, const float* x, const float* w, const float* b, float* y,
                            ThreadPool* pool);

enum class ConvImpl { kAuto, kReference, kOnednn, kGemm };

// kAuto: a GEMM path where one applies (pointwise Conv, ConvTranspose with
// kernel == stride), else oneDNN when it accepts the case, else the reference
// loops. kOnednn / kGemm fail (Unsupported) instead of falling back; tests use them
// to be sure what they test.
Result<std::unique_ptr<OpKernel>> CreateConvKernel(const NodeSignature& sig, bool transpose, ConvImpl impl);
Result<std::unique_ptr<OpKernel>> CreateOnednnConvKernel(const NodeSignature& sig, const ConvParams& p);
// conv_gemm.cpp: pointwise Conv (1x1x1, stride 1, no padding/groups) and
// ConvTranspose with kernel == stride (no padding, dilation or groups) as GEMMs.
bool PointwiseConvApplies(const ConvParams& p);
Result<std::unique_ptr<OpKernel>> CreatePointwiseConvKernel(const NodeSignature& sig, const ConvParams& p);
bool GemmConvTransposeApplies(const ConvParams& p);
Result<std::unique_ptr<OpKernel>> CreateGemmConvTransposeKernel(const NodeSignature& sig, const ConvParams& p);

}  // namespace itkit::cpu
