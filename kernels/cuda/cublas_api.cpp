#include "cuda/cublas_api.h"

#include <string>

#include "cuda/shared_library.h"

namespace itkit::cuda {
namespace {

Result<const CublasApi*> LoadCublas() {
  const std::string soname = StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  // Fallback: the toolkit's folder found at build time (often off the loader path).
  ITKIT_ASSIGN_OR_RETURN(void* lib, OpenSharedLibrary(soname, ITKIT_CUBLAS_DIR, "cuBLAS"));
  static CublasApi api;
  std::string missing;
  ResolveSymbol(lib, "cublasCreate_v2", &api.Create, &missing);
  ResolveSymbol(lib, "cublasDestroy_v2", &api.Destroy, &missing);
  ResolveSymbol(lib, "cublasSetStream_v2", &api.SetStream, &missing);
  ResolveSymbol(lib, "cublasSetMathMode", &api.SetMathMode, &missing);
  ResolveSymbol(lib, "cublasGetVersion_v2", &api.GetVersion, &missing);
  ResolveSymbol(lib, "cublasGetStatusString", &api.GetStatusString, &missing);
  ResolveSymbol(lib, "cublasGemmStridedBatchedEx", &api.GemmStridedBatchedEx, &missing);
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
