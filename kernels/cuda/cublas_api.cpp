#include "cuda/cublas_api.h"

#include <dlfcn.h>

#include <string>

namespace itkit::cuda {
namespace {

template <typename Fn>
bool Resolve(void* lib, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(::dlsym(lib, name));
  if (*fn == nullptr) *missing += StrCat(missing->empty() ? "" : ", ", name);
  return *fn != nullptr;
}

Result<const CublasApi*> LoadCublas() {
  const std::string soname = StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  // RTLD_LOCAL: its symbols stay out of the global namespace.
  void* lib = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string first_error = lib ? "" : (::dlerror() ? ::dlerror() : "not found");
#ifdef ITKIT_CUBLAS_DIR
  // The toolkit's folder, as found at build time: most installs keep it off the
  // loader path.
  if (lib == nullptr) lib = ::dlopen((std::string(ITKIT_CUBLAS_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
  if (lib == nullptr) {
    return Unavailable("cuBLAS could not be loaded (", soname, ": ", first_error,
                       "); add its folder to LD_LIBRARY_PATH");
  }
  static CublasApi api;
  std::string missing;
  Resolve(lib, "cublasCreate_v2", &api.Create, &missing);
  Resolve(lib, "cublasDestroy_v2", &api.Destroy, &missing);
  Resolve(lib, "cublasSetStream_v2", &api.SetStream, &missing);
  Resolve(lib, "cublasSetMathMode", &api.SetMathMode, &missing);
  Resolve(lib, "cublasGetVersion_v2", &api.GetVersion, &missing);
  Resolve(lib, "cublasGetStatusString", &api.GetStatusString, &missing);
  Resolve(lib, "cublasGemmStridedBatchedEx", &api.GemmStridedBatchedEx, &missing);
  if (!missing.empty()) return Unavailable("cuBLAS (", soname, ") lacks ", missing);
  return &api;
}

}  // namespace

Result<const CublasApi*> Cublas() {
  static const Result<const CublasApi*> loaded = LoadCublas();
  return loaded;
}

const char* CublasStatusText(cublasStatus_t status) {
  auto api = Cublas();
  if (api.ok()) return (*api)->GetStatusString(status);
  return "cuBLAS error (library not loaded)";
}

}  // namespace itkit::cuda
