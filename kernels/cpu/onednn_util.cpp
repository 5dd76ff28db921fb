#include "cpu/onednn_util.h"

#include <dlfcn.h>

#include <algorithm>

namespace itkit::cpu {

const dnnl::engine& OnednnEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void SetOnednnThreads(int threads) {
  // Debian's libdnnl is built with DNNL_CPU_RUNTIME=OMP and brings libgomp. We do
  // not link libgomp ourselves (the kernels' CMake only names DNNL::dnnl), so look
  // the setter up in the already-loaded libgomp instead of adding a link dependency.
  using SetFn = void (*)(int);
  static const SetFn set_threads =
      reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set_threads && threads > 0) set_threads(threads);
}

dnnl::memory::desc PlainDesc(const Shape& shape) {
  dnnl::memory::dims dims(shape.begin(), shape.end());
  dnnl::memory::dims strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * std::max<int64_t>(1, shape[i]);
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, strides);
}

}  // namespace itkit::cpu
