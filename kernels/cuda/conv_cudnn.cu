// Conv, itkit.FusedConv and ConvTranspose through cuDNN's convolution API
// (cudnnConvolutionForward / cudnnConvolutionBackwardData; see docs/cuda-backend.md
// for why this API and not the graph API).
//
// Two paths:
//  * direct: cuDNN reads and writes the session's NCDHW tensors in their dtype; bias
//    and activation follow in one in-place pass. FP32 mode (FMA math, or TF32 when
//    allowed).
//  * channels-last half (FP16 mode, or f16 tensors): cuDNN runs on f16 NDHWC data on
//    tensor cores with f32 accumulation on prepacked f16 KDHWC filters. An input or
//    output the session stores channels-last (ValueDesc::channels_last, the default
//    in FP16 mode) is read or written in place; an NCDHW one is converted in the
//    workspace (one tiled transpose, which also applies bias and activation on the
//    way out). A channels-last f32 value is converted by an elementwise pass.
//
// itkit.FusedConv's Z (Y = act(conv + B + Z)) is added by the epilogue pass, or by
// cuDNN itself (beta = 1) when the session placed Y in Z's memory.
//
// The algorithm is chosen once per shape (timed with cudnnFind*, or cuDNN's heuristic
// when autotune is off) and remembered in the tuning cache, on disk when configured.
// A forward convolution also races the engines of cuDNN's graph API against it
// (cudnn_graph_conv.h; CudaBackendOptions::cudnn_graph) and runs the faster.
//
// Three shapes on f16 channels-last data may run our own kernels instead, when they win
// the race against cuDNN at plan time (own_kernels.cuh) or CudaBackendOptions::own_kernels
// says so: a ConvTranspose whose kernel equals its stride (conv_transpose_strided.cu), a
// 3x3x3, stride 1, padding 1 convolution from 32 to 32 channels (conv3_c32.cu), and the
// same from 1-4 to 16 or 32 channels, a network's stem (conv3_stem.cu).
#include <algorithm>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/cudnn_graph_conv.h"
#include "cuda/own_kernels.cuh"
#include "itkit/channels_last.h"
#include "itkit/log.h"
#include "shape_infer/window_geometry.h"

namespace itkit::cuda {
namespace {

size_t Align256(size_t v) { return (v + 255) / 256 * 256; }

// ---- geometry ---------------------------------------------------------------------

struct ConvGeometry {
  bool transpose = false;
  int nd = 0;  // spatial dims given to cuDNN (2 or 3; 1-D convolutions get a unit H axis)
  int64_t n = 0, cin = 0, cout = 0, group = 1;
  std::vector<int64_t> in, out, kernel, strides, dilations, pads;  // nd each
  int64_t in_spatial() const { int64_t s = 1; for (int64_t v : in) s *= v; return s; }
  int64_t out_spatial() const { int64_t s = 1; for (int64_t v : out) s *= v; return s; }
};

Result<ConvGeometry> GetGeometry(const NodeSignature& sig) {
  const Node& node = *sig.node;
  ConvGeometry g;
  g.transpose = node.op_type == "ConvTranspose";
  const Shape& x = sig.inputs[0].shape;
  const Shape& w = sig.inputs[1].shape;
  const Shape& y = sig.outputs[0].shape;
  if (x.size() < 3 || x.size() > 5 || w.size() != x.size() || y.size() != x.size())
    return Unsupported("CUDA convolutions take 1-3 spatial dims");
  const std::vector<int64_t> wk(w.begin() + 2, w.end());
  ITKIT_ASSIGN_OR_RETURN(shape_rules::WindowGeometry wg,
                         shape_rules::ComputeWindowGeometry(
                             node, g.transpose ? shape_rules::WindowOp::kConvTranspose : shape_rules::WindowOp::kConv,
                             x, wk));
  g.n = x[0];
  g.cin = x[1];
  g.cout = y[1];
  g.group = node.attrs.GetInt("group", 1);
  const int spatial = static_cast<int>(x.size()) - 2;
  for (int i = 0; i < spatial; ++i) {
    if (wg.pad_begin[i] != wg.pad_end[i]) return Unsupported("asymmetric padding (cuDNN pads symmetrically)");
    const int64_t dk = (wg.kernel[i] - 1) * wg.dilations[i] + 1;
    // cuDNN's output extent of the forward convolution (for ConvTranspose: from our
    // output back to our input) must be the planned one.
    const int64_t fwd_in = g.transpose ? y[2 + i] : x[2 + i];
    const int64_t fwd_out = g.transpose ? x[2 + i] : y[2 + i];
    const int64_t span = fwd_in + 2 * wg.pad_begin[i] - dk;
    if (span < 0 || span / wg.strides[i] + 1 != fwd_out)
      return Unsupported("output extent ", y[2 + i], " on axis ", 2 + i,
                         " is not what cuDNN computes (output_padding >= stride?)");
  }
  if (spatial == 1) {  // 1-D as 2-D with H = 1
    g.in = {1};
    g.out = {1};
    g.kernel = {1};
    g.strides = {1};
    g.dilations = {1};
    g.pads = {0};
  }
  for (int i = 0; i < spatial; ++i) {
    g.in.push_back(x[2 + i]);
    g.out.push_back(y[2 + i]);
    g.kernel.push_back(wg.kernel[i]);
    g.strides.push_back(wg.strides[i]);
    g.dilations.push_back(wg.dilations[i]);
    g.pads.push_back(wg.pad_begin[i]);
  }
  g.nd = static_cast<int>(g.in.size());
  for (const auto* list : {&g.in, &g.out, &g.kernel, &g.strides, &g.dilations, &g.pads})
    for (int64_t v : *list)
      if (v > (int64_t{1} << 30)) return Unsupported("convolution parameter ", v, " exceeds cuDNN's int range");
  return g;
}

bool ConvSupports(const NodeSignature& sig, const CudaContext& ctx, std::string* reason) {
  if (sig.inputs.size() < 2) return Reject(reason, "needs X and W");
  const DType dt = sig.inputs[0].dtype;
  if (!IsF32OrF16(dt)) return Reject(reason, "dtype ", DTypeName(dt));
  if (sig.inputs[1].dtype != dt || (sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined &&
                                    sig.inputs[2].dtype != dt))
    return Reject(reason, "mixed dtypes");
  const bool has_z = sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined;
  if (has_z && (sig.inputs[3].dtype != sig.outputs[0].dtype ||
                sig.inputs[3].channels_last != sig.outputs[0].channels_last))
    return Reject(reason, "Z stored unlike Y");
  float alpha = 0;
  auto act = ParseActivation(*sig.node, &alpha);
  if (!act.ok()) return Reject(reason, act.status().message());
  auto g = GetGeometry(sig);
  if (!g.ok()) return Reject(reason, g.status().message());
  if (g->n > 65535) return Reject(reason, "batch ", g->n, " > 65535");
  if (ElementCount(sig.outputs[0].shape) == 0 || ElementCount(sig.inputs[0].shape) == 0)
    return Reject(reason, "empty tensor");
  for (size_t i = 1; i < sig.inputs.size() && i < 3; ++i)
    if (sig.inputs[i].channels_last) return Reject(reason, "channels-last weights or bias");
  if ((sig.inputs[0].channels_last || sig.outputs[0].channels_last) && !sig.inputs[1].constant)
    return Reject(reason, "channels-last data needs constant weights (the FP16 NDHWC path)");
  return true;
}

// ---- cuDNN descriptors --------------------------------------------------------------

struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;  // our input / our output
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~Descriptors() {
    if (x) dnn().DestroyTensorDescriptor(x);
    if (y) dnn().DestroyTensorDescriptor(y);
    if (w) dnn().DestroyFilterDescriptor(w);
    if (conv) dnn().DestroyConvolutionDescriptor(conv);
  }
};

// Dims [N, C, spatial...] with NC(D)HW or N(D)HWC strides.
Status SetTensor(cudnnTensorDescriptor_t desc, cudnnDataType_t type, int64_t n, int64_t c,
                 const std::vector<int64_t>& sp, bool channels_last) {
  Shape logical = {n, c};
  logical.insert(logical.end(), sp.begin(), sp.end());
  const std::vector<int64_t> strides64 = LogicalStrides(logical, channels_last);
  const int rank = static_cast<int>(logical.size());
  int dims[kMaxDims], strides[kMaxDims];
  for (int i = 0; i < rank; ++i) {
    dims[i] = static_cast<int>(logical[static_cast<size_t>(i)]);
    strides[i] = static_cast<int>(strides64[static_cast<size_t>(i)]);
  }
  ITKIT_CUDNN_CHECK(dnn().SetTensorNdDescriptor(desc, type, rank, dims, strides));
  return Status::Ok();
}

// ---- kernels: layout conversion and epilogues ---------------------------------------

// out[b][c][r] = epilogue(in[b][r][c]) for in [B][R][C]: a 32x32 shared-memory tile
// transpose so reads and writes are both coalesced. With kEpilogue, `c` is the
// channel (bias index): used on the way back from NDHWC ([N][S][C]) to NCDHW.
// With `z` (kEpilogue only; laid out as `out`, may be `out` itself) z is added too.
template <typename Tin, typename Tout, bool kEpilogue>
__global__ void TransposeKernel(const Tin* __restrict__ in, Tout* out, int64_t R, int64_t C,
                                const Tout* __restrict__ bias, const Tout* z, Act act, float alpha) {
  __shared__ float tile[32][33];  // +1 column: no bank conflicts on the transposed read
  const int64_t tiles_c = (C + 31) / 32;
  const int64_t tiles = ((R + 31) / 32) * tiles_c;
  const Tin* src = in + static_cast<int64_t>(blockIdx.y) * R * C;
  Tout* dst = out + static_cast<int64_t>(blockIdx.y) * R * C;
  const Tout* zb = z ? z + static_cast<int64_t>(blockIdx.y) * R * C : nullptr;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t r0 = (t / tiles_c) * 32, c0 = (t % tiles_c) * 32;
    for (int k = 0; k < 32; k += 8) {
      const int64_t r = r0 + threadIdx.y + k, c = c0 + threadIdx.x;
      if (r < R && c < C) tile[threadIdx.y + k][threadIdx.x] = ToF(src[r * C + c]);
    }
    __syncthreads();
    for (int k = 0; k < 32; k += 8) {
      const int64_t c = c0 + threadIdx.y + k, r = r0 + threadIdx.x;
      if (r < R && c < C) {
        float v = tile[threadIdx.x][threadIdx.y + k];
        if (kEpilogue) {
          if (bias) v += ToF(bias[c]);
          if (zb) v += ToF(zb[c * R + r]);
          v = ApplyAct(v, act, alpha);
        }
        dst[c * R + r] = FromF<Tout>(v);
      }
    }
    __syncthreads();  // the tile is refilled by the next iteration
  }
}

template <typename Tin, typename Tout, bool kEpilogue>
Status LaunchTranspose(const CudaContext& ctx, const Tin* in, Tout* out, int64_t batch, int64_t R, int64_t C,
                       const Tout* bias, Act act, float alpha, const Tout* z = nullptr) {
  const int64_t tiles = ((R + 31) / 32) * ((C + 31) / 32);
  const unsigned gx = static_cast<unsigned>(std::min<int64_t>(tiles, int64_t{ctx.num_sms} * 16));
  TransposeKernel<Tin, Tout, kEpilogue>
      <<<dim3(gx, static_cast<unsigned>(batch)), dim3(32, 8), 0, ctx.stream>>>(in, out, R, C, bias, z, act, alpha);
  ITKIT_CUDA_CHECK_LAUNCH("TransposeKernel");
  return Status::Ok();
}

// y[row][s] = act(y[row][s] + bias[row % C] + z[row][s]) in place over [rows = N*C][S];
// bias and z may be null.
template <typename T>
__global__ void BiasActKernel(T* __restrict__ y, int64_t rows, int64_t C, int64_t S, const T* __restrict__ bias,
                              const T* __restrict__ z, Act act, float alpha) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float b = bias ? ToF(bias[row % C]) : 0.0f;
    T* p = y + row * S;
    const T* zr = z ? z + row * S : nullptr;
    for (int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; s < S;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x)
      p[s] = FromF<T>(ApplyAct(ToF(p[s]) + b + (zr ? ToF(zr[s]) : 0.0f), act, alpha));
  }
}

// out[i] = act(in[i] + bias[i % C] + z[i]) over channels-last data (C fastest); in, z
// and out may be the same memory; bias and z may be null. Converts between f32 and
// f16 on the way.
template <typename Tin, typename Tout>
__global__ void ChannelsLastEpilogueKernel(const Tin* in, Tout* out, int64_t total, int64_t C,
                                           const Tout* __restrict__ bias, const Tout* z, Act act, float alpha) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = ToF(in[i]);
    if (bias) v += ToF(bias[i % C]);
    if (z) v += ToF(z[i]);
    out[i] = FromF<Tout>(ApplyAct(v, act, alpha));
  }
}

template <typename Tin, typename Tout>
Status LaunchChannelsLastEpilogue(const CudaContext& ctx, const Tin* in, Tout* out, int64_t total, int64_t C,
                                  const Tout* bias, Act act, float alpha, const Tout* z = nullptr) {
  ChannelsLastEpilogueKernel<Tin, Tout><<<GridFor(total, ctx), kThreads, 0, ctx.stream>>>(in, out, total, C, bias, z,
                                                                                          act, alpha);
  ITKIT_CUDA_CHECK_LAUNCH("ChannelsLastEpilogueKernel");
  return Status::Ok();
}

// ---- the kernel -----------------------------------------------------------------------

enum class OwnKind { kNone, kStridedTranspose, kConv3C32, kConv3Stem };

class ConvKernel final : public OpKernel {
 public:
  explicit ConvKernel(std::shared_ptr<CudaContext> ctx) : ctx_(std::move(ctx)) {}

  Status Init(const NodeSignature& sig) {
    ITKIT_ASSIGN_OR_RETURN(g_, GetGeometry(sig));
    ITKIT_ASSIGN_OR_RETURN(act_, ParseActivation(*sig.node, &alpha_));
    dtype_ = sig.inputs[0].dtype;
    has_bias_ = sig.inputs.size() > 2 && sig.inputs[2].dtype != DType::kUndefined;
    has_z_ = sig.inputs.size() > 3 && sig.inputs[3].dtype != DType::kUndefined;
    in_cl_ = sig.inputs[0].channels_last;
    out_cl_ = sig.outputs[0].channels_last;
    const Tensor* weights = sig.inputs[1].constant;
    if (in_cl_ || out_cl_) {
      // Channels-last data exists only for the NDHWC half path; if cuDNN has no
      // algorithm for it, the planner offers the row-major form next.
      if (!weights) return Unsupported("channels-last data needs constant weights");
      own_kind_ = ApplicableOwnKernel();
      if (own_kind_ != OwnKind::kNone && ctx_->options.own_kernels == CudaBackendOptions::OwnKernels::kOwn) {
        half_ = true;  // no cuDNN configuration at all: ours is the only path
        own_ = true;
        return PackHalfWeights(*weights);
      }
      Status s = Configure(/*channels_last_half=*/true);
      if (s.code() == StatusCode::kOutOfMemory) return s;
      if (!s.ok()) return Unsupported("no fp16 channels-last cuDNN algorithm: ", s.message());
      ITKIT_RETURN_IF_ERROR(PackHalfWeights(*weights));
      if (own_kind_ != OwnKind::kNone) ChooseOwnOrCudnn(*sig.node);
      return Status::Ok();
    }
    const bool want_half = ctx_->options.fp16 || dtype_ == DType::kF16;
    if (want_half && weights) {
      Status s = Configure(/*channels_last_half=*/true);
      if (s.ok()) return PackHalfWeights(*weights);
      if (s.code() == StatusCode::kOutOfMemory) return s;
      // Any other refusal of the channels-last f16 configuration (cuDNN support varies
      // with groups, channel counts and versions): the NCDHW path still runs it.
      LogWarning("CUDA: ", sig.node->Describe(), ": no fp16 channels-last cuDNN algorithm (", s.message(),
                 "); running it in ", DTypeName(dtype_), " NCDHW");
    }
    return Configure(/*channels_last_half=*/false);
  }

  size_t workspace_bytes() const override { return workspace_; }
  // Y over Z: cuDNN accumulates onto it (beta = 1), or the epilogue reads Z where it writes Y.
  int in_place_input() const override { return has_z_ ? 3 : -1; }
  // The NDHWC half path convolves with its own prepacked f16 filter.
  bool reads_input_at_run(size_t input) const override { return !(half_ && input == 1); }

  Status Run(KernelContext& kc) override {
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    return DispatchFloat(dtype_, [&]<typename T>() { return RunTyped<T>(kc); });
  }

 private:
  // ConvTranspose with kernel == stride (no padding, dilation, groups or output
  // padding) from and to f16 channels-last values: our kernel can run it.
  bool OwnStridedTransposeApplies() const {
    if (!g_.transpose || g_.group != 1 || dtype_ != DType::kF16 || !in_cl_ || !out_cl_ || has_z_ ||
        act_ != Act::kNone || g_.nd > 3)
      return false;
    for (int i = 0; i < g_.nd; ++i)
      if (g_.kernel[i] != g_.strides[i] || g_.pads[i] != 0 || g_.dilations[i] != 1 ||
          g_.out[i] != g_.in[i] * g_.kernel[i])
        return false;
    return true;
  }

  StridedTransposeShape StridedShape() const {
    StridedTransposeShape s;
    s.n = g_.n;
    s.cin = g_.cin;
    s.cout = g_.cout;
    const int lead = 3 - g_.nd;  // 2-D (and 1-D, given to cuDNN as 2-D) get leading 1s
    for (int i = 0; i < g_.nd; ++i) {
      s.in[lead + i] = g_.in[i];
      s.k[lead + i] = g_.kernel[i];
    }
    return s;
  }

  // A 3x3x3, stride 1, padding 1 convolution (no groups or dilation) between f16
  // channels-last values: what our 3x3x3 kernels take, given their channel counts.
  bool IsHalfSame3x3x3() const {
    if (g_.transpose || g_.group != 1 || dtype_ != DType::kF16 || !in_cl_ || !out_cl_ || g_.nd != 3) return false;
    for (int i = 0; i < 3; ++i)
      if (g_.kernel[i] != 3 || g_.strides[i] != 1 || g_.pads[i] != 1 || g_.dilations[i] != 1) return false;
    return true;
  }
  // From 32 to 32 channels (conv3_c32.cu).
  bool OwnConv3Applies() const {
    return IsHalfSame3x3x3() && g_.cin == kConv3Channels && g_.cout == kConv3Channels;
  }
  // From 1-4 to 16 or 32 channels without Z, a network's first convolution (conv3_stem.cu).
  bool OwnConv3StemApplies() const { return IsHalfSame3x3x3() && !has_z_ && Conv3StemTakes(g_.cin, g_.cout); }

  OwnKind ApplicableOwnKernel() const {
    if (OwnStridedTransposeApplies()) return OwnKind::kStridedTranspose;
    if (OwnConv3StemApplies()) return OwnKind::kConv3Stem;
    if (!OwnConv3Applies()) return OwnKind::kNone;
    Status ready = PrepareConv3C32(*ctx_);
    if (ready.ok()) return OwnKind::kConv3C32;
    LogInfo("CUDA: cuDNN runs the 3x3x3 convolutions: ", ready.message());
    return OwnKind::kNone;
  }

  Conv3Shape Conv3ShapeOf() const { return Conv3Shape{g_.n, g_.in[0], g_.in[1], g_.in[2]}; }

  Status LaunchOwn(const __half* x, const __half* bias, const __half* z, __half* y) const {
    const auto* w = static_cast<const __half*>(packed_w_.data);
    if (own_kind_ == OwnKind::kStridedTranspose) return LaunchStridedTranspose(*ctx_, StridedShape(), x, w, bias, y);
    if (own_kind_ == OwnKind::kConv3Stem) {
      const StemShape stem{g_.n, g_.in[0], g_.in[1], g_.in[2], static_cast<int>(g_.cin), static_cast<int>(g_.cout)};
      return LaunchConv3Stem(*ctx_, stem, x, w, bias, y, act_, alpha_);
    }
    return LaunchConv3C32(*ctx_, Conv3ShapeOf(), x, w, bias, z, y, act_, alpha_);
  }

  // kAuto with autotune: ours or cuDNN's, raced once per shape and cached. Anything
  // going wrong in the race (e.g. no memory for its buffers) leaves cuDNN's path.
  void ChooseOwnOrCudnn(const Node& node) {
    if (ctx_->options.own_kernels != CudaBackendOptions::OwnKernels::kAuto || !ctx_->options.autotune) return;
    enum : int { kCudnnWins = 0, kOwnWins = 1, kOwnDisagrees = 2 };
    const char* what = own_kind_ == OwnKind::kStridedTranspose ? "strided ConvTranspose"
                       : own_kind_ == OwnKind::kConv3Stem        ? "3x3x3 stem convolution"
                                                                 : "3x3x3 convolution";
    // Bias, Z and activation are part of the key: they run in our kernel's store. The
    // kernel's revision too, so that a changed kernel is raced (and checked) again.
    const std::string epilogue =
        StrCat("|act", static_cast<int>(act_), "|bias", has_bias_ ? 1 : 0, "|z", has_z_ ? 1 : 0);
    const std::string key =
        TuningKey(CUDNN_TENSOR_OP_MATH) +
        (own_kind_ == OwnKind::kStridedTranspose ? StrCat("|own:strided-transpose.v2|bias", has_bias_ ? 1 : 0)
         : own_kind_ == OwnKind::kConv3Stem      ? "|own:conv3-stem.v1" + epilogue
                                                 : "|own:conv3-c32.v3" + epilogue);
    if (auto hit = ctx_->tuning->Find(key)) {
      UseOwn(hit->algo == kOwnWins);
      return;
    }
    auto race = RaceOwnAgainstCudnn();
    if (!race.ok()) {
      LogWarning("CUDA: ", node.Describe(), ": racing our ", what, " against cuDNN failed (", race.status().message(),
                 "); cuDNN runs it");
      return;
    }
    int verdict = race->own_wins() ? kOwnWins : kCudnnWins;
    if (!race->output.agree) {
      verdict = kOwnDisagrees;
      LogWarning("CUDA: ", node.Describe(), ": our ", what, " differs from cuDNN's by up to ",
                 race->output.max_abs_diff, " (output scale ", race->output.max_abs_library, "); cuDNN runs it");
    } else {
      LogInfo("CUDA: ", node.Describe(), ": ", what, " ", race->own_ms, " ms ours vs ", race->library_ms,
              " ms cuDNN: ", verdict == kOwnWins ? "ours" : "cuDNN", " runs it");
    }
    UseOwn(verdict == kOwnWins);
    Status saved = ctx_->tuning->Insert(key, TunedAlgo{verdict, 0, 0});
    if (!saved.ok()) LogWarning("CUDA: ", saved.message());
  }

  void UseOwn(bool own) {
    own_ = own;
    if (own) workspace_ = 0;  // f16 channels-last in and out: no conversions, no cuDNN workspace
  }

  // Both paths on random f16 data of the node's shape, with the bias + activation pass
  // cuDNN's path needs (ours does both in its store). With Z, in the form the planner
  // gives it: Y written over Z (cuDNN accumulating with beta = 1), both outputs starting
  // from the same Z; the timed repeats accumulate further, which costs the same.
  Result<KernelRace> RaceOwnAgainstCudnn() {
    const int64_t x_count = g_.n * g_.cin * g_.in_spatial(), y_count = g_.n * g_.cout * g_.out_spatial();
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer x, ctx_->Allocate(static_cast<size_t>(x_count) * 2));
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer y_cudnn, ctx_->Allocate(static_cast<size_t>(y_count) * 2));
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer y_own, ctx_->Allocate(static_cast<size_t>(y_count) * 2));
    ITKIT_ASSIGN_OR_RETURN(DeviceBuffer bias, ctx_->Allocate(static_cast<size_t>(g_.cout) * 2));
    DeviceBuffer ws;
    if (library_workspace()) {
      ITKIT_ASSIGN_OR_RETURN(ws, ctx_->Allocate(library_workspace()));
    }
    ITKIT_RETURN_IF_ERROR(ctx_->Activate());
    auto* xh = static_cast<__half*>(x.data);
    auto* bh = has_bias_ ? static_cast<__half*>(bias.data) : nullptr;
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(*ctx_, xh, x_count, 1));
    ITKIT_RETURN_IF_ERROR(FillPseudoRandom(*ctx_, static_cast<__half*>(bias.data), g_.cout, 2));
    auto* yc = static_cast<__half*>(y_cudnn.data);
    auto* yo = static_cast<__half*>(y_own.data);
    if (has_z_) {
      ITKIT_RETURN_IF_ERROR(FillPseudoRandom(*ctx_, yc, y_count, 5));
      ITKIT_RETURN_IF_ERROR(FillPseudoRandom(*ctx_, yo, y_count, 5));
    } else {
      // NaN (0xFFFF) where ours should write: an element it misses cannot pass.
      ITKIT_CUDA_CHECK(cudaMemsetAsync(yo, 0xFF, static_cast<size_t>(y_count) * 2, ctx_->stream));
    }
    auto cudnn = [&]() -> Status {
      ITKIT_RETURN_IF_ERROR(Convolve(xh, packed_w_.data, yc, ws.data, /*accumulate=*/has_z_));
      if (!bh && act_ == Act::kNone) return Status::Ok();
      return LaunchChannelsLastEpilogue<__half, __half>(*ctx_, yc, yc, y_count, g_.cout, bh, act_, alpha_);
    };
    auto own = [&]() { return LaunchOwn(xh, bh, has_z_ ? yo : nullptr, yo); };
    // f16 outputs of f32 sums: a few f16 steps of the output's scale apart at most.
    return RaceOwnKernel(*ctx_, cudnn, own, yc, yo, y_count, /*tolerance=*/1e-2);
  }

  // Descriptors + algorithm for one path; Unsupported when cuDNN has no algorithm.
  Status Configure(bool channels_last_half) {
    half_ = channels_last_half;
    d_ = std::make_unique<Descriptors>();
    ITKIT_CUDNN_CHECK(dnn().CreateTensorDescriptor(&d_->x));
    ITKIT_CUDNN_CHECK(dnn().CreateTensorDescriptor(&d_->y));
    ITKIT_CUDNN_CHECK(dnn().CreateFilterDescriptor(&d_->w));
    ITKIT_CUDNN_CHECK(dnn().CreateConvolutionDescriptor(&d_->conv));
    const cudnnDataType_t data = half_ || dtype_ == DType::kF16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    ITKIT_RETURN_IF_ERROR(SetTensor(d_->x, data, g_.n, g_.cin, g_.in, half_));
    ITKIT_RETURN_IF_ERROR(SetTensor(d_->y, data, g_.n, g_.cout, g_.out, half_));
    // Filter [K, C/group, k...] of the forward convolution: for ConvTranspose the one
    // from our output (Cout channels) to our input (Cin), i.e. ONNX's [Cin, Cout/g, k...].
    std::vector<int> fdims = {static_cast<int>(g_.transpose ? g_.cin : g_.cout),
                              static_cast<int>((g_.transpose ? g_.cout : g_.cin) / g_.group)};
    for (int64_t k : g_.kernel) fdims.push_back(static_cast<int>(k));
    ITKIT_CUDNN_CHECK(dnn().SetFilterNdDescriptor(d_->w, data, half_ ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                                 static_cast<int>(fdims.size()), fdims.data()));
    std::vector<int> pads, strides, dilations;
    for (int i = 0; i < g_.nd; ++i) {
      pads.push_back(static_cast<int>(g_.pads[i]));
      strides.push_back(static_cast<int>(g_.strides[i]));
      dilations.push_back(static_cast<int>(g_.dilations[i]));
    }
    // Accumulation is always f32 (f16 data with f32 compute = cuDNN's PSEUDO_HALF config).
    ITKIT_CUDNN_CHECK(dnn().SetConvolutionNdDescriptor(d_->conv, g_.nd, pads.data(), strides.data(), dilations.data(),
                                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    ITKIT_CUDNN_CHECK(dnn().SetConvolutionGroupCount(d_->conv, static_cast<int>(g_.group)));
    ITKIT_RETURN_IF_ERROR(SelectAlgorithm(data == CUDNN_DATA_HALF));
    ChooseGraphPlan(data);
    workspace_ = Align256(library_workspace());
    if (half_) {
      // f16 channels-last values are used in place; anything else is converted here.
      const bool f16 = dtype_ == DType::kF16;
      x_half_bytes_ = in_cl_ && f16 ? 0 : Align256(static_cast<size_t>(g_.n * g_.cin * g_.in_spatial()) * 2);
      y_half_bytes_ = out_cl_ && f16 ? 0 : Align256(static_cast<size_t>(g_.n * g_.cout * g_.out_spatial()) * 2);
      workspace_ += x_half_bytes_ + y_half_bytes_;
    }
    return Status::Ok();
  }

  std::string TuningKey(cudnnMathType_t requested) const {
    const std::string layout = half_ ? std::string("|f16-ndhwc") : StrCat("|", DTypeName(dtype_), "-ncdhw");
    std::string key = StrCat(ctx_->tuning_tag, g_.transpose ? "|dgrad" : "|fwd", layout, "|n", g_.n, "|ci", g_.cin, "|co", g_.cout, "|g",
                             g_.group, "|math", static_cast<int>(requested), "|ws", ctx_->options.max_workspace_bytes);
    const std::pair<const char*, const std::vector<int64_t>*> lists[] = {
        {"|in", &g_.in}, {"|k", &g_.kernel}, {"|s", &g_.strides}, {"|d", &g_.dilations}, {"|p", &g_.pads}};
    for (const auto& [tag, list] : lists) {
      key += tag;
      for (int64_t v : *list) key += StrCat(".", v);
    }
    return key;
  }

  // Workspace of `algo` with the descriptor's current math type, or an error.
  Status QueryWorkspace(int algo, size_t* bytes) const {
    if (g_.transpose) {
      ITKIT_CUDNN_CHECK(dnn().GetConvolutionBackwardDataWorkspaceSize(ctx_->cudnn, d_->w, d_->x, d_->conv, d_->y,
                                                                     static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
                                                                     bytes));
    } else {
      ITKIT_CUDNN_CHECK(dnn().GetConvolutionForwardWorkspaceSize(ctx_->cudnn, d_->x, d_->w, d_->conv, d_->y,
                                                                static_cast<cudnnConvolutionFwdAlgo_t>(algo), bytes));
    }
    return Status::Ok();
  }

  // Tries one candidate: sets its math type and checks its workspace fits.
  bool Accept(int algo, cudnnMathType_t math) {
    if (dnn().SetConvolutionMathType(d_->conv, math) != CUDNN_STATUS_SUCCESS) return false;
    size_t ws = 0;
    if (!QueryWorkspace(algo, &ws).ok() || ws > ctx_->options.max_workspace_bytes) return false;
    algo_ = algo;
    math_ = math;
    algo_workspace_ = ws;
    return true;
  }

  Status SelectAlgorithm(bool half_data) {
    // FP32 without TF32 must stay on FMA kernels; FP16 may use tensor cores; TF32
    // mode lets cuDNN's default math use them for f32.
    const bool strict_fp32 = !half_data && !ctx_->options.allow_tf32;
    const cudnnMathType_t requested = RequestedMath(half_data);
    ITKIT_CUDNN_CHECK(dnn().SetConvolutionMathType(d_->conv, requested));
    const std::string key = TuningKey(requested);
    if (auto hit = ctx_->tuning->Find(key)) {
      if (Accept(hit->algo, static_cast<cudnnMathType_t>(hit->math_type))) return Status::Ok();
      LogWarning("CUDA: cached cuDNN algorithm ", hit->algo, " no longer fits; tuning again");
      ITKIT_CUDNN_CHECK(dnn().SetConvolutionMathType(d_->conv, requested));
    }
    struct Candidate {
      int algo;
      cudnnMathType_t math;
      float ms;  // measured (Find), or < 0 (heuristic order)
    };
    std::vector<Candidate> candidates;
    constexpr int kMax = 16;
    int returned = 0;
    if (g_.transpose) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
      cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
      if (ctx_->options.autotune)
        st = dnn().FindConvolutionBackwardDataAlgorithm(ctx_->cudnn, d_->w, d_->x, d_->conv, d_->y, kMax, &returned, perf);
      const bool timed = st == CUDNN_STATUS_SUCCESS;
      if (!timed)
        ITKIT_CUDNN_CHECK(dnn().GetConvolutionBackwardDataAlgorithm_v7(ctx_->cudnn, d_->w, d_->x, d_->conv, d_->y, kMax,
                                                                      &returned, perf));
      for (int i = 0; i < returned; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS)
          candidates.push_back({static_cast<int>(perf[i].algo), perf[i].mathType, timed ? perf[i].time : -1.0f});
    } else {
      cudnnConvolutionFwdAlgoPerf_t perf[kMax];
      cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
      if (ctx_->options.autotune)
        st = dnn().FindConvolutionForwardAlgorithm(ctx_->cudnn, d_->x, d_->w, d_->conv, d_->y, kMax, &returned, perf);
      const bool timed = st == CUDNN_STATUS_SUCCESS;
      if (!timed)
        ITKIT_CUDNN_CHECK(dnn().GetConvolutionForwardAlgorithm_v7(ctx_->cudnn, d_->x, d_->w, d_->conv, d_->y, kMax,
                                                                 &returned, perf));
      for (int i = 0; i < returned; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS)
          candidates.push_back({static_cast<int>(perf[i].algo), perf[i].mathType, timed ? perf[i].time : -1.0f});
    }
    // Results come fastest first (Find) or best first (heuristic): PickAlgorithm picks
    // among the usable ones (within the workspace limit, the math the mode allows).
    std::vector<Candidate> usable;
    std::vector<AlgoCandidate> timings;
    for (const Candidate& c : candidates) {
      if (strict_fp32 && (c.math == CUDNN_TENSOR_OP_MATH || c.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)) continue;
      if (!Accept(c.algo, strict_fp32 ? CUDNN_FMA_MATH : c.math)) continue;
      usable.push_back({algo_, math_, c.ms});
      timings.push_back({c.ms, algo_workspace_});
    }
    const int pick = PickAlgorithm(timings);
    if (pick < 0)
      return Unsupported("no cuDNN algorithm (of ", candidates.size(), " candidates) within the ",
                         ctx_->options.max_workspace_bytes >> 20, " MiB workspace limit");
    // Again for the chosen one: a later candidate set its own math type.
    const Candidate& chosen = usable[static_cast<size_t>(pick)];
    if (!Accept(chosen.algo, chosen.math))
      return Internal("cuDNN algorithm ", chosen.algo, " accepted once, then refused");
    Status saved = ctx_->tuning->Insert(key, TunedAlgo{algo_, static_cast<int>(math_), algo_workspace_});
    if (!saved.ok()) LogWarning("CUDA: ", saved.message());
    return Status::Ok();
  }

  // ONNX [A, B, k...] (f32 or f16 host) -> f16 [A, k..., B] on the device: cuDNN's
  // NHWC filter layout (A = K for Conv, Cin for ConvTranspose).
  Status PackHalfWeights(const Tensor& w) {
    const int64_t a = w.dim(0), b = w.dim(1);
    int64_t k = 1;
    for (int i = 2; i < w.rank(); ++i) k *= w.dim(i);
    std::vector<uint16_t> packed(static_cast<size_t>(a * b * k));
    for (int64_t ia = 0; ia < a; ++ia)
      for (int64_t ib = 0; ib < b; ++ib)
        for (int64_t ik = 0; ik < k; ++ik) {
          const int64_t src = (ia * b + ib) * k + ik;
          const uint16_t h = w.dtype() == DType::kF16 ? w.data<uint16_t>()[src] : FloatToHalf(w.data<float>()[src]);
          packed[static_cast<size_t>((ia * k + ik) * b + ib)] = h;
        }
    ITKIT_ASSIGN_OR_RETURN(packed_w_, ctx_->Allocate(packed.size() * sizeof(uint16_t)));
    return ctx_->Upload(packed_w_.data, packed.data(), packed.size() * sizeof(uint16_t));
  }

  cudnnMathType_t RequestedMath(bool half_data) const {
    if (half_data) return CUDNN_TENSOR_OP_MATH;
    return ctx_->options.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  }

  // The workspace of the library path that runs (the graph plan falls back to the
  // convolution API's algorithm for pointers it cannot take, so both must fit).
  size_t library_workspace() const { return std::max(algo_workspace_, graph_ ? graph_->workspace_bytes() : size_t{0}); }

  // Forward convolutions without Z: a graph-API plan where one beats the convolution
  // API's algorithm (SelectGraphConvPlan; CudaBackendOptions::cudnn_graph).
  void ChooseGraphPlan(cudnnDataType_t data) {
    graph_.reset();
    if (g_.transpose || g_.group != 1 || has_z_) return;
    const bool half_data = data == CUDNN_DATA_HALF;
    GraphConvSpec spec;
    spec.data = data;
    spec.allow_tensor_cores = half_data || ctx_->options.allow_tf32;
    spec.n = g_.n;
    spec.cin = g_.cin;
    spec.cout = g_.cout;
    spec.in = g_.in;
    spec.out = g_.out;
    spec.kernel = g_.kernel;
    spec.pads = g_.pads;
    spec.strides = g_.strides;
    spec.dilations = g_.dilations;
    spec.channels_last = half_;
    const std::string key = TuningKey(RequestedMath(half_data)) + "|graph:A.v1";
    auto legacy = [this](const void* x, const void* w, void* y, void* ws) { return ConvolveLegacy(x, w, y, ws); };
    graph_ = SelectGraphConvPlan(*ctx_, spec, key, legacy, algo_workspace_);
  }

  // y = conv (or y += conv with accumulate): the graph plan where chosen, else (and for
  // accumulate, and pointers the plan cannot take) the convolution API's algorithm.
  Status Convolve(const void* x, const void* w, void* y, void* ws, bool accumulate = false) {
    if (graph_ && !accumulate) {
      Status s = graph_->Execute(ctx_->cudnn, x, w, y, ws);
      if (s.ok()) return s;
      if (!graph_fallback_logged_) {
        LogWarning("CUDA: cuDNN graph plan failed (", s.message(), "); the convolution API runs it");
        graph_fallback_logged_ = true;
      }
      // A pointer it cannot take is this call's; any other failure is the plan's.
      if (s.code() != StatusCode::kInvalidArgument) graph_.reset();
    }
    return ConvolveLegacy(x, w, y, ws, accumulate);
  }

  Status ConvolveLegacy(const void* x, const void* w, void* y, void* ws, bool accumulate = false) {
    const float one = 1.0f, zero = accumulate ? 1.0f : 0.0f;  // f32 scaling factors for f32 and f16 data alike
    if (g_.transpose) {
      ITKIT_CUDNN_CHECK(dnn().ConvolutionBackwardData(ctx_->cudnn, &one, d_->w, w, d_->x, x, d_->conv,
                                                     static_cast<cudnnConvolutionBwdDataAlgo_t>(algo_), ws,
                                                     algo_workspace_, &zero, d_->y, y));
    } else {
      ITKIT_CUDNN_CHECK(dnn().ConvolutionForward(ctx_->cudnn, &one, d_->x, x, d_->w, w, d_->conv,
                                                static_cast<cudnnConvolutionFwdAlgo_t>(algo_), ws, algo_workspace_,
                                                &zero, d_->y, y));
    }
    return Status::Ok();
  }

  template <typename T>
  Status RunTyped(KernelContext& kc) {
    if (kc.workspace_bytes < workspace_) return Internal("convolution workspace too small");
    const T* x = kc.inputs[0]->data<T>();
    const T* bias = has_bias_ && kc.inputs.size() > 2 && kc.inputs[2] ? kc.inputs[2]->data<T>() : nullptr;
    T* y = kc.outputs[0]->data<T>();
    // Z in Y's memory (the session placed Y over it): cuDNN adds onto it; otherwise
    // the epilogue adds Z.
    const T* z = has_z_ && kc.inputs.size() > 3 && kc.inputs[3] ? kc.inputs[3]->data<T>() : nullptr;
    if (has_z_ && !z) return Internal("FusedConv: Z missing");
    if constexpr (std::is_same_v<T, __half>) {
      if (own_) return LaunchOwn(x, bias, z, y);
    }
    const bool z_in_y = z != nullptr && static_cast<const void*>(z) == static_cast<const void*>(y);
    const T* z_epilogue = z_in_y ? nullptr : z;
    auto* ws = static_cast<uint8_t*>(kc.workspace);
    if (!half_) {
      ITKIT_RETURN_IF_ERROR(Convolve(x, kc.inputs[1]->raw(), y, library_workspace() ? ws : nullptr, z_in_y));
      if (!bias && !z_epilogue && act_ == Act::kNone) return Status::Ok();
      const int64_t rows = g_.n * g_.cout, s = g_.out_spatial();
      const unsigned gx = static_cast<unsigned>(std::min<int64_t>((s + kThreads - 1) / kThreads, 1024));
      const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
      BiasActKernel<T><<<dim3(gx, gy), kThreads, 0, ctx_->stream>>>(y, rows, g_.cout, s, bias, z_epilogue, act_,
                                                                      alpha_);
      ITKIT_CUDA_CHECK_LAUNCH("BiasActKernel");
      return Status::Ok();
    }
    constexpr bool kHalf = std::is_same_v<T, __half>;
    auto* xh = reinterpret_cast<__half*>(ws);
    auto* yh = reinterpret_cast<__half*>(ws + x_half_bytes_);
    void* algo_ws = library_workspace() ? ws + x_half_bytes_ + y_half_bytes_ : nullptr;
    const int64_t x_count = g_.n * g_.cin * g_.in_spatial(), y_count = g_.n * g_.cout * g_.out_spatial();
    const __half* x_ndhwc = xh;
    if (!in_cl_) {  // [N][Cin][S] -> [N][S][Cin] f16
      ITKIT_RETURN_IF_ERROR((LaunchTranspose<T, __half, false>(*ctx_, x, xh, g_.n, g_.cin, g_.in_spatial(), nullptr,
                                                                Act::kNone, 0.0f)));
    } else if constexpr (kHalf) {
      x_ndhwc = x;
    } else {
      ITKIT_RETURN_IF_ERROR((LaunchChannelsLastEpilogue<T, __half>(*ctx_, x, xh, x_count, g_.cin, nullptr, Act::kNone,
                                                                    0.0f)));
    }
    if (out_cl_ && kHalf) {  // cuDNN writes the output itself; bias, Z + activation in place
      __half* yo = reinterpret_cast<__half*>(y);
      ITKIT_RETURN_IF_ERROR(Convolve(x_ndhwc, packed_w_.data, yo, algo_ws, z_in_y));
      if (!bias && !z_epilogue && act_ == Act::kNone) return Status::Ok();
      return LaunchChannelsLastEpilogue<__half, __half>(*ctx_, yo, yo, y_count, g_.cout,
                                                        reinterpret_cast<const __half*>(bias), act_, alpha_,
                                                        reinterpret_cast<const __half*>(z_epilogue));
    }
    // Converted on the way out: Z (even in Y's memory) is read where Y is written.
    ITKIT_RETURN_IF_ERROR(Convolve(x_ndhwc, packed_w_.data, yh, algo_ws));
    if (out_cl_) return LaunchChannelsLastEpilogue<__half, T>(*ctx_, yh, y, y_count, g_.cout, bias, act_, alpha_, z);
    // [N][S][Cout] f16 -> [N][Cout][S] with bias, Z + activation
    return LaunchTranspose<__half, T, true>(*ctx_, yh, y, g_.n, g_.out_spatial(), g_.cout, bias, act_, alpha_, z);
  }

  std::shared_ptr<CudaContext> ctx_;
  ConvGeometry g_;
  DType dtype_ = DType::kF32;
  Act act_ = Act::kNone;
  float alpha_ = 0.01f;
  bool has_bias_ = false, has_z_ = false, half_ = false, in_cl_ = false, out_cl_ = false;
  // Which of our kernels could run this node, and whether it does instead of cuDNN.
  OwnKind own_kind_ = OwnKind::kNone;
  bool own_ = false;
  std::unique_ptr<Descriptors> d_;
  int algo_ = 0;
  cudnnMathType_t math_ = CUDNN_DEFAULT_MATH;
  size_t algo_workspace_ = 0, workspace_ = 0, x_half_bytes_ = 0, y_half_bytes_ = 0;
  DeviceBuffer packed_w_;
  std::unique_ptr<GraphConvPlan> graph_;  // a graph-API plan that beat algo_ (forward only)
  bool graph_fallback_logged_ = false;
};

Result<std::unique_ptr<OpKernel>> CreateConv(const NodeSignature& sig, const std::shared_ptr<CudaContext>& ctx) {
  auto kernel = std::make_unique<ConvKernel>(ctx);
  ITKIT_RETURN_IF_ERROR(kernel->Init(sig));
  return std::unique_ptr<OpKernel>(std::move(kernel));
}

}  // namespace

void AppendConvOps(std::vector<CudaOpEntry>& table) {
  table.push_back({"", "Conv", ConvSupports, CreateConv});
  table.push_back({"", "ConvTranspose", ConvSupports, CreateConv});
  table.push_back({kItkitDomain, "FusedConv", ConvSupports, CreateConv});
}

}  // namespace itkit::cuda
