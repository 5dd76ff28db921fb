// Kernel launches under the emulator: translate_cu.py turns `K<<<g, b, s, st>>>(args)`
// into `::itkit_emu::Launcher(K, "K", g, b, s, st)(args)`. The arguments are converted
// to the kernel's parameter types once, as nvcc does, and every emulated thread calls
// the kernel with those values. runtime.cpp checks the configuration as the CUDA
// runtime would, runs the grid (or records it while the stream is being captured),
// and leaves any error for cudaGetLastError.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <tuple>
#include <utility>

namespace itkit_emu {

void Launch(const void* kernel, const char* name, dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t stream,
            std::function<void()> body);

template <typename... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t dynamic_shared = 0,
           cudaStream_t stream = nullptr)
      : kernel_(kernel), name_(name), grid_(grid), block_(block), shared_(dynamic_shared), stream_(stream) {}

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    auto kernel = kernel_;
    Launch(reinterpret_cast<const void*>(kernel), name_, grid_, block_, shared_, stream_,
           [kernel, params] { std::apply(kernel, *params); });
  }

 private:
  void (*kernel_)(P...);
  const char* name_;
  dim3 grid_, block_;
  size_t shared_;
  cudaStream_t stream_;
};

}  // namespace itkit_emu

// cuda_runtime.h's kernel-taking overloads exist only for nvcc.
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <typename... P>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, void (*kernel)(P...)) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(kernel));
}
