// Convolutions that are plain matrix products on the NCDHW layout, run through
// oneDNN's sgemm without the blocked-layout reorders of the oneDNN convolution
// primitives (which cost more than these ops' arithmetic):
//
// * Pointwise Conv (1x1x1 kernel, stride 1, no padding, one group), e.g. the
//   segmentation head: Y[n] (C_out x voxels) = W (C_out x C_in) x X[n] (C_in x voxels).
//
// * ConvTranspose whose kernel equals its stride (no padding, dilation or groups):
//   the U-Net's 2x2x2 stride-2 upsampling. Each input voxel then owns a disjoint
//   k0 x k1 x k2 block of the output, so the op is one GEMM
//     T[C_out * taps, voxels] = W^T[C_out * taps, C_in] x X[C_in, voxels]
//   followed by a scatter of T's rows into the output blocks, with bias and
//   activation (2-8x faster than oneDNN's deconvolution + reorders for these shapes).
//
// Both process the voxels in chunks (parallel over the session's pool, one
// single-threaded sgemm per chunk) so a chunk's results are still in cache for the
// bias/activation/scatter pass.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "cpu/conv_kernels.h"
#include "cpu/onednn_util.h"

namespace itkit::cpu {
namespace {

class GemmConvTransposeKernel final : public OpKernel {
 public:
  explicit GemmConvTransposeKernel(const ConvParams& p) : p_(p) {
    taps_ = p.kernel_size();
    // Chunks of whole input rows, about 2 K voxels: T is then taps * C_out * 8 KiB.
    rows_per_chunk_ = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, p.in[2]));
    const int64_t rows = p.in[0] * p.in[1];
    chunks_ = (rows + rows_per_chunk_ - 1) / rows_per_chunk_;
    // Split output channels too when there are few chunks (deep, small layers).
    oc_blocks_ = std::clamp<int64_t>(16 / chunks_, 1, p.out_channels);
  }

  Status Run(KernelContext& ctx) override {
    const float* x = ctx.inputs[0]->data<float>();
    const float* w = ctx.inputs[1]->data<float>();
    const float* b = ctx.inputs.size() > 2 && ctx.inputs[2] ? ctx.inputs[2]->data<float>() : nullptr;
    float* y = ctx.outputs[0]->data<float>();
    const int threads = ctx.pool ? ctx.pool->size() : 1;
    std::atomic<bool> ok{true};
    const int64_t tasks = p_.batch * chunks_ * oc_blocks_;
    ParallelFor(ctx.pool, tasks, 1, [&](int64_t begin, int64_t end) {
      SetOnednnThreads(1);  // parallel over tasks already
      thread_local std::vector<float> tmp;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / (chunks_ * oc_blocks_), c = t / oc_blocks_ % chunks_, ob = t % oc_blocks_;
        if (!RunTask(x, w, b, y, n, c, ob, &tmp)) ok = false;
      }
    });
    SetOnednnThreads(threads);  // the caller took part: restore its team size
    if (!ok) return Internal("ConvTranspose: oneDNN sgemm failed");
    return Status::Ok();
  }

 private:
  bool RunTask(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t chunk, int64_t ob,
               std::vector<float>* tmp) const {
    const int64_t in_sp = p_.in_spatial(), out_sp = p_.out_spatial();
    const int64_t row0 = chunk * rows_per_chunk_;
    const int64_t nrows = std::min(rows_per_chunk_, p_.in[0] * p_.in[1] - row0);
    const int64_t v0 = row0 * p_.in[2], nv = nrows * p_.in[2];
    const int64_t oc_per = (p_.out_channels + oc_blocks_ - 1) / oc_blocks_;
    const int64_t oc0 = ob * oc_per, oc1 = std::min(p_.out_channels, oc0 + oc_per);
    if (oc0 >= oc1 || nv <= 0) return true;
    const int64_t m = (oc1 - oc0) * taps_, ldw = p_.out_channels * taps_;
    tmp->resize(static_cast<size_t>(m * nv));
    // T = W[:, oc0*taps : oc1*taps]^T x X[n][:, v0 : v0 + nv]; W is [C_in, C_out * taps].
    if (dnnl_sgemm('T', 'N', m, nv, p_.in_channels, 1.0f, w + oc0 * taps_, ldw, x + n * p_.in_channels * in_sp + v0,
                   in_sp, 0.0f, tmp->data(), nv) != dnnl_success)
      return false;
    const int64_t k1 = p_.kernel[1], k2 = p_.kernel[2];
    const int64_t ow = p_.out[2], oh = p_.out[1];
    for (int64_t oc = oc0; oc < oc1; ++oc) {
      const float bias = b ? b[oc] : 0.0f;
      float* yc = y + (n * p_.out_channels + oc) * out_sp;
      for (int64_t tap = 0; tap < taps_; ++tap) {
        const int64_t kd = tap / (k1 * k2), kh = tap / k2 % k1, kw = tap % k2;
        const float* src = tmp->data() + ((oc - oc0) * taps_ + tap) * nv;
        for (int64_t r = 0; r < nrows; ++r) {
          const int64_t id = (row0 + r) / p_.in[1], ih = (row0 + r) % p_.in[1];
          float* yrow = yc + ((id * p_.kernel[0] + kd) * oh + ih * k1 + kh) * ow + kw;
          const float* srow = src + r * p_.in[2];
          for (int64_t iw = 0; iw < p_.in[2]; ++iw) yrow[iw * k2] = ApplyActivation(p_.act, srow[iw] + bias);
        }
      }
    }
    return true;
  }

  ConvParams p_;
  int64_t taps_ = 1, rows_per_chunk_ = 1, chunks_ = 1, oc_blocks_ = 1;
};

class PointwiseConvKernel final : public OpKernel {
 public:
  explicit PointwiseConvKernel(const ConvParams& p) : p_(p) {
    // Chunks whose C_out x chunk block of Y stays within ~512 KiB of cache.
    chunk_ = std::max<int64_t>(256, (int64_t{1} << 17) / std::max<int64_t>(1, p.out_channels));
    chunks_ = (p.out_spatial() + chunk_ - 1) / chunk_;
  }

  Status Run(KernelContext& ctx) override {
    const float* x = ctx.inputs[0]->data<float>();
    const float* w = ctx.inputs[1]->data<float>();
    const float* b = ctx.inputs.size() > 2 && ctx.inputs[2] ? ctx.inputs[2]->data<float>() : nullptr;
    float* y = ctx.outputs[0]->data<float>();
    const int threads = ctx.pool ? ctx.pool->size() : 1;
    const int64_t vox = p_.out_spatial();
    std::atomic<bool> ok{true};
    ParallelFor(ctx.pool, p_.batch * chunks_, 1, [&](int64_t begin, int64_t end) {
      SetOnednnThreads(1);  // parallel over chunks already
      for (int64_t t = begin; t < end; ++t) {
        const int64_t n = t / chunks_, v0 = t % chunks_ * chunk_, nv = std::min(chunk_, vox - v0);
        float* yn = y + n * p_.out_channels * vox + v0;
        if (dnnl_sgemm('N', 'N', p_.out_channels, nv, p_.in_channels, 1.0f, w, p_.in_channels,
                       x + n * p_.in_channels * vox + v0, vox, 0.0f, yn, vox) != dnnl_success) {
          ok = false;
          continue;
        }
        if (!b && p_.act.kind == ActKind::kNone) continue;
        for (int64_t oc = 0; oc < p_.out_channels; ++oc) {
          float* row = yn + oc * vox;
          const float bias = b ? b[oc] : 0.0f;
          for (int64_t i = 0; i < nv; ++i) row[i] += bias;
          ApplyActivation(p_.act, row, nv);
        }
      }
    });
    SetOnednnThreads(threads);
    if (!ok) return Internal("Conv: oneDNN sgemm failed");
    return Status::Ok();
  }

 private:
  ConvParams p_;
  int64_t chunk_ = 1, chunks_ = 1;
};

}  // namespace

bool GemmConvTransposeApplies(const ConvParams& p) {
  if (!p.transpose || p.group != 1) return false;
  for (size_t i = 0; i < 3; ++i)
    if (p.kernel[i] != p.stride[i] || p.dilation[i] != 1 || p.pad_begin[i] != 0 || p.pad_end[i] != 0 ||
        p.output_padding[i] != 0)
      return false;
  return true;
}

bool PointwiseConvApplies(const ConvParams& p) {
  if (p.transpose || p.group != 1) return false;
  for (size_t i = 0; i < 3; ++i)
    if (p.kernel[i] != 1 || p.stride[i] != 1 || p.pad_begin[i] != 0 || p.pad_end[i] != 0) return false;
  return true;
}

Result<std::unique_ptr<OpKernel>> CreatePointwiseConvKernel(const NodeSignature& sig, const ConvParams& p) {
  if (!PointwiseConvApplies(p))
    return Unsupported(sig.node->Describe(), ": the GEMM Conv needs a 1x1x1 kernel, stride 1, no padding/groups");
  return std::unique_ptr<OpKernel>(std::make_unique<PointwiseConvKernel>(p));
}

Result<std::unique_ptr<OpKernel>> CreateGemmConvTransposeKernel(const NodeSignature& sig, const ConvParams& p) {
  if (!GemmConvTransposeApplies(p))
    return Unsupported(sig.node->Describe(), ": the GEMM ConvTranspose needs kernel == stride, no padding/groups");
  return std::unique_ptr<OpKernel>(std::make_unique<GemmConvTransposeKernel>(p));
}

}  // namespace itkit::cpu
