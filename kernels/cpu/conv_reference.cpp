// Reference Conv / ConvTranspose: direct loops over the ONNX definition, with
// double accumulation. Parallel over (batch, output channel) only; written to be
// obviously right, not fast.
#include <algorithm>
#include <vector>

#include "cpu/conv_kernels.h"

namespace itkit::cpu {

void ConvReference(const ConvParams& p, const float* x, const float* w, const float* b, float* y,
                   ThreadPool* pool) {
  const int64_t icg = p.in_channels / p.group, ocg = p.out_channels / p.group;
  const int64_t in_sp = p.in_spatial(), out_sp = p.out_spatial(), ksize = p.kernel_size();
  ParallelFor(pool, p.batch * p.out_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(p.out[2]));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / p.out_channels, oc = task % p.out_channels, g = oc / ocg;
      float* yc = y + task * out_sp;
      for (int64_t od = 0; od < p.out[0]; ++od) {
        for (int64_t oh = 0; oh < p.out[1]; ++oh) {
          std::fill(acc.begin(), acc.end(), b ? static_cast<double>(b[oc]) : 0.0);
          for (int64_t ic = 0; ic < icg; ++ic) {
            const float* xc = x + (n * p.in_channels + g * icg + ic) * in_sp;
            const float* wc = w + (oc * icg + ic) * ksize;
            for (int64_t kd = 0; kd < p.kernel[0]; ++kd) {
              const int64_t id = od * p.stride[0] - p.pad_begin[0] + kd * p.dilation[0];
              if (id < 0 || id >= p.in[0]) continue;
              for (int64_t kh = 0; kh < p.kernel[1]; ++kh) {
                const int64_t ih = oh * p.stride[1] - p.pad_begin[1] + kh * p.dilation[1];
                if (ih < 0 || ih >= p.in[1]) continue;
                const float* xrow = xc + (id * p.in[1] + ih) * p.in[2];
                for (int64_t kw = 0; kw < p.kernel[2]; ++kw) {
                  const double wv = wc[(kd * p.kernel[1] + kh) * p.kernel[2] + kw];
                  for (int64_t ow = 0; ow < p.out[2]; ++ow) {
                    const int64_t iw = ow * p.stride[2] - p.pad_begin[2] + kw * p.dilation[2];
                    if (iw >= 0 && iw < p.in[2]) acc[static_cast<size_t>(ow)] += wv * xrow[iw];
                  }
                }
              }
            }
          }
          float* yrow = yc + (od * p.out[1] + oh) * p.out[2];
          for (int64_t ow = 0; ow < p.out[2]; ++ow)
            yrow[ow] = ApplyActivation(p.act, static_cast<float>(acc[static_cast<size_t>(ow)]));
        }
      }
    }
  });
}

// Scatter form of the transposed convolution: input voxel i, kernel tap k lands on
// output o = i * stride - pad_begin + k * dilation. Each task owns one output
// channel, so the scatter needs no synchronisation.
void ConvTransposeReference(const ConvParams& p, const float* x, const float* w, const float* b, float* y,
                            ThreadPool* pool) {
  const int64_t icg = p.in_channels / p.group, ocg = p.out_channels / p.group;
  const int64_t in_sp = p.in_spatial(), out_sp = p.out_spatial(), ksize = p.kernel_size();
  ParallelFor(pool, p.batch * p.out_channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(out_sp));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / p.out_channels, oc = task % p.out_channels;
      const int64_t g = oc / ocg, ocl = oc % ocg;
      std::fill(acc.begin(), acc.end(), b ? static_cast<double>(b[oc]) : 0.0);
      for (int64_t ic = g * icg; ic < (g + 1) * icg; ++ic) {
        const float* xc = x + (n * p.in_channels + ic) * in_sp;
        const float* wc = w + (ic * ocg + ocl) * ksize;  // W is [C_in, C_out/group, k...]
        for (int64_t id = 0; id < p.in[0]; ++id)
          for (int64_t ih = 0; ih < p.in[1]; ++ih)
            for (int64_t iw = 0; iw < p.in[2]; ++iw) {
              const double xv = xc[(id * p.in[1] + ih) * p.in[2] + iw];
              for (int64_t kd = 0; kd < p.kernel[0]; ++kd) {
                const int64_t od = id * p.stride[0] - p.pad_begin[0] + kd * p.dilation[0];
                if (od < 0 || od >= p.out[0]) continue;
                for (int64_t kh = 0; kh < p.kernel[1]; ++kh) {
                  const int64_t oh = ih * p.stride[1] - p.pad_begin[1] + kh * p.dilation[1];
                  if (oh < 0 || oh >= p.out[1]) continue;
                  for (int64_t kw = 0; kw < p.kernel[2]; ++kw) {
                    const int64_t ow = iw * p.stride[2] - p.pad_begin[2] + kw * p.dilation[2];
                    if (ow < 0 || ow >= p.out[2]) continue;
                    acc[static_cast<size_t>((od * p.out[1] + oh) * p.out[2] + ow)] +=
                        xv * wc[(kd * p.kernel[1] + kh) * p.kernel[2] + kw];
                  }
                }
              }
            }
      }
      float* yc = y + task * out_sp;
      for (int64_t i = 0; i < out_sp; ++i) yc[i] = ApplyActivation(p.act, static_cast<float>(acc[static_cast<size_t>(i)]));
    }
  });
}

}  // namespace itkit::cpu
