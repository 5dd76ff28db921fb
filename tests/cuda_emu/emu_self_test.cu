// The emulator itself, on small CUDA programs whose results are derived by hand: the
// semantics the backend's kernels rely on (barriers, shuffles, the tensor-core
// instructions' layouts, cp.async ordering) and the errors a GPU would give (bad
// launch configurations, copies in the wrong direction, divergent collectives).
// Written as CUDA and translated like the backend's sources.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace {

template <typename T>
T* DeviceCopyOf(const std::vector<T>& host) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}
template <typename T>
std::vector<T> HostCopyOf(const T* d, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

// Each thread stores its index, waits for the block, and reads its neighbour's.
__global__ void NeighbourKernel(int* out) {
  __shared__ int values[128];
  values[threadIdx.x] = static_cast<int>(threadIdx.x) + 1000 * static_cast<int>(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = values[(threadIdx.x + 1) % blockDim.x];
}

TEST(CudaEmulator, BarrierMakesEveryStoreVisible) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 2 * 128 * sizeof(int)), cudaSuccess);
  NeighbourKernel<<<2, 128>>>(d);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> out = HostCopyOf(d, 256);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 128; ++t) EXPECT_EQ(out[static_cast<size_t>(b * 128 + t)], (t + 1) % 128 + 1000 * b);
  cudaFree(d);
}

// A butterfly sum over the warp: every lane ends with 0 + 1 + ... + 31 = 496; a shuffle
// down by 1 gives lane i the value of lane i + 1 (lane 31 keeps its own).
__global__ void ShuffleKernel(int* sums, int* down) {
  int v = static_cast<int>(threadIdx.x);
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  sums[threadIdx.x] = v;
  down[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x) * 10, 1);
}

TEST(CudaEmulator, ShufflesFollowTheirDefinitions) {
  int *sums = nullptr, *down = nullptr;
  ASSERT_EQ(cudaMalloc(&sums, 32 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&down, 32 * sizeof(int)), cudaSuccess);
  ShuffleKernel<<<1, 32>>>(sums, down);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> s = HostCopyOf(sums, 32), d = HostCopyOf(down, 32);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(s[static_cast<size_t>(i)], 496);
    EXPECT_EQ(d[static_cast<size_t>(i)], i < 31 ? (i + 1) * 10 : 310);
  }
  cudaFree(sums);
  cudaFree(down);
}

// Lane 0 leaves before a full-warp shuffle: undefined on the GPU, a failed launch here.
__global__ void ExitedLaneKernel(int* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

TEST(CudaEmulator, CollectiveWithAnExitedLaneFailsTheLaunch) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(int)), cudaSuccess);
  ExitedLaneKernel<<<1, 32>>>(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // reported once
  cudaFree(d);
}

// Half of warp 1 waits in a shuffle for lanes that wait at a barrier, which waits for
// the shuffling half: a hang on the GPU, a failed launch (with a description) here.
__global__ void CrossedWaitKernel(int* out) {
  const bool second_warp = threadIdx.x >= 32, low_half = threadIdx.x % 32 < 16;
  if (second_warp && low_half) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
  __syncthreads();
  if (second_warp && !low_half) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

TEST(CudaEmulator, DeadlockFailsTheLaunch) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64 * sizeof(int)), cudaSuccess);
  CrossedWaitKernel<<<1, 64>>>(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  cudaFree(d);
}

// Half a warp in __any_sync, the other half in __all_sync with the same mask: not the
// same intrinsic, undefined on the GPU, a failed launch here.
__global__ void MixedVotesKernel(int* out) {
  const bool low_half = threadIdx.x < 16;
  out[threadIdx.x] = low_half ? __any_sync(0xffffffffu, 1) : __all_sync(0xffffffffu, 1);
}

TEST(CudaEmulator, DifferentCollectivesInOneWarpFailTheLaunch) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(int)), cudaSuccess);
  MixedVotesKernel<<<1, 32>>>(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  cudaFree(d);
}

// One m16n8k16 product through ldmatrix (A from shared memory in the canonical
// pattern: lanes 0-15 give rows 0-15 at column 0, lanes 16-31 the same rows at column
// 8) and B packed by hand per the PTX layout; D compared with a host matrix product.
__global__ void MmaKernel(const __half* a, const __half* b, float* d) {
  extern __shared__ __align__(128) uint8_t smem[];
  auto* tile = reinterpret_cast<__half*>(smem);
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 256; i += 32) tile[i] = a[i];
  __syncthreads();
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
  const int row = lane % 16, col = (lane / 16) * 8;
  uint32_t af[4];
  ::itkit_emu::LdMatrixX4(af, base + static_cast<uint32_t>((row * 16 + col) * 2));
  const int g = lane / 4, q = lane % 4;
  auto pack = [](__half lo, __half hi) {
    uint16_t l, h;
    std::memcpy(&l, &lo, 2);
    std::memcpy(&h, &hi, 2);
    return static_cast<uint32_t>(l) | static_cast<uint32_t>(h) << 16;
  };
  // b is K x N = 16 x 8 row-major: b[k * 8 + n].
  const uint32_t b0 = pack(b[(2 * q) * 8 + g], b[(2 * q + 1) * 8 + g]);
  const uint32_t b1 = pack(b[(2 * q + 8) * 8 + g], b[(2 * q + 9) * 8 + g]);
  float c[4] = {1.0f, 1.0f, 1.0f, 1.0f};  // D = A B + 1
  ::itkit_emu::MmaM16N8K16(c, af, b0, b1);
  d[g * 8 + 2 * q] = c[0];
  d[g * 8 + 2 * q + 1] = c[1];
  d[(g + 8) * 8 + 2 * q] = c[2];
  d[(g + 8) * 8 + 2 * q + 1] = c[3];
}

TEST(CudaEmulator, LdmatrixAndMmaComputeTheMatrixProduct) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-4, 4);  // exact in f16 and in the f32 sums
  std::vector<__half> a(256), b(128);
  std::vector<float> af(256), bf(128);
  for (size_t i = 0; i < a.size(); ++i) af[i] = static_cast<float>(small(rng)), a[i] = __float2half(af[i]);
  for (size_t i = 0; i < b.size(); ++i) bf[i] = static_cast<float>(small(rng)), b[i] = __float2half(bf[i]);
  __half* da = DeviceCopyOf(a);
  __half* db = DeviceCopyOf(b);
  float* dd = nullptr;
  ASSERT_EQ(cudaMalloc(&dd, 128 * sizeof(float)), cudaSuccess);
  MmaKernel<<<1, 32, 512>>>(da, db, dd);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> d = HostCopyOf(dd, 128);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float want = 1.0f;
      for (int k = 0; k < 16; ++k) want += af[static_cast<size_t>(m * 16 + k)] * bf[static_cast<size_t>(k * 8 + n)];
      EXPECT_EQ(d[static_cast<size_t>(m * 8 + n)], want) << "m " << m << " n " << n;
    }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dd);
}

// A cp.async destination read before its wait holds no data (0xff bytes: NaN), after
// the wait the copied value; a zero-byte source fills zeros.
__global__ void CopyAsyncKernel(const float* src, float* out) {
  extern __shared__ __align__(128) uint8_t smem[];
  auto* dst = reinterpret_cast<float*>(smem);
  ::itkit_emu::CopyAsyncIssue(dst, src, 16, 16);
  ::itkit_emu::CopyAsyncIssue(dst + 4, src, 16, 0);
  ::itkit_emu::CopyAsyncCommit();
  out[0] = dst[0];
  ::itkit_emu::CopyAsyncWait(0);
  out[1] = dst[0];
  out[2] = dst[4];
}

TEST(CudaEmulator, CopyAsyncLandsAtItsWait) {
  float* src = DeviceCopyOf(std::vector<float>{3.5f, 1.0f, 2.0f, 4.0f});
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 3 * sizeof(float)), cudaSuccess);
  CopyAsyncKernel<<<1, 1, 64>>>(src, out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> o = HostCopyOf(out, 3);
  EXPECT_TRUE(std::isnan(o[0]));
  EXPECT_EQ(o[1], 3.5f);
  EXPECT_EQ(o[2], 0.0f);
  cudaFree(src);
  cudaFree(out);
}

// Shared memory nothing wrote in this block reads as 0xff bytes (NaN), also after an
// earlier block wrote the same variable.
__global__ void UnwrittenSharedKernel(float* out) {
  __shared__ float value;
  if (threadIdx.x == 0) {
    out[blockIdx.x] = value;
    value = 1.0f;
  }
}

TEST(CudaEmulator, UnwrittenSharedMemoryIsNaN) {
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * sizeof(float)), cudaSuccess);
  UnwrittenSharedKernel<<<2, 32>>>(out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> o = HostCopyOf(out, 2);
  EXPECT_TRUE(std::isnan(o[0]));
  EXPECT_TRUE(std::isnan(o[1])) << "a block saw the previous block's shared memory";
  cudaFree(out);
}

// A cp.async whose source changes before the wait: undefined on the GPU, a failure here.
__global__ void CopySourceChangedKernel(float* src) {
  extern __shared__ __align__(128) uint8_t smem[];
  ::itkit_emu::CopyAsyncIssue(smem, src, 16, 16);
  ::itkit_emu::CopyAsyncCommit();
  src[0] = 5.0f;
  ::itkit_emu::CopyAsyncWait(0);
}

TEST(CudaEmulator, CopyAsyncSourceChangedFailsTheLaunch) {
  float* src = DeviceCopyOf(std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f});
  CopySourceChangedKernel<<<1, 1, 64>>>(src);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  cudaFree(src);
}

__global__ void CountKernel(int* counter) { atomicAdd(counter, 1); }

TEST(CudaEmulator, RefusesWhatTheRuntimeRefuses) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, sizeof(int)), cudaSuccess);
  CountKernel<<<1, 1025>>>(d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  CountKernel<<<1, 32, 64 * 1024>>>(d);  // beyond 48 KB without the kernel's opt-in
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(cudaFuncSetAttribute(CountKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
  CountKernel<<<1, 32, 64 * 1024>>>(d);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  int host[4] = {0, 0, 0, 0};
  // Directions that contradict where the memory is; a range past the allocation's end.
  EXPECT_EQ(cudaMemcpy(host, &host[1], sizeof(int), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, host, sizeof(int), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, host, 2 * sizeof(int), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  (void)cudaGetLastError();
  cudaFree(d);
}

// A captured launch and copy run only when the graph is replayed, once per replay.
TEST(CudaEmulator, GraphsReplayWhatWasCaptured) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d, 0, sizeof(int)), cudaSuccess);
  int seen = -1;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  CountKernel<<<2, 32, 0, stream>>>(d);
  ASSERT_EQ(cudaMemcpyAsync(&seen, d, sizeof(int), cudaMemcpyDeviceToHost, stream), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  EXPECT_EQ(seen, -1);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  EXPECT_EQ(seen, 64);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  EXPECT_EQ(seen, 128);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  // What CUDA prohibits during a capture fails and invalidates it: no graph comes out.
  for (int prohibited = 0; prohibited < 2; ++prohibited) {
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    CountKernel<<<1, 32, 0, stream>>>(d);
    void* extra = nullptr;
    if (prohibited == 0) {
      EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorStreamCaptureUnsupported);
    } else {
      EXPECT_EQ(cudaMalloc(&extra, 64), cudaErrorStreamCaptureUnsupported);
    }
    graph = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    (void)cudaGetLastError();
  }
  cudaFree(d);
  cudaStreamDestroy(stream);
}

}  // namespace
