#include "cuda/cudnn_api.h"

#include <dlfcn.h>

#include <string>

namespace itkit::cuda {
namespace {

CudnnApi api;  // filled once by Load(); read-only afterwards

template <typename Fn>
void Resolve(void* lib, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(::dlsym(lib, name));
  if (*fn == nullptr) *missing += StrCat(missing->empty() ? "" : ", ", name);
}

Result<const CudnnApi*> Load() {
  const std::string soname = StrCat("libcudnn.so.", CUDNN_MAJOR);
  void* lib = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string first_error = lib ? "" : (::dlerror() ? ::dlerror() : "not found");
#ifdef ITKIT_CUDNN_DIR
  // The folder found at build time (e.g. a pip wheel's), usually off the loader path.
  if (lib == nullptr) lib = ::dlopen((std::string(ITKIT_CUDNN_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
  if (lib == nullptr) {
    return Unavailable("cuDNN could not be loaded (", soname, ": ", first_error,
                       "); add its folder to LD_LIBRARY_PATH");
  }
  std::string missing;
  Resolve(lib, "cudnnConvolutionBackwardData", &api.ConvolutionBackwardData, &missing);
  Resolve(lib, "cudnnConvolutionForward", &api.ConvolutionForward, &missing);
  Resolve(lib, "cudnnCreate", &api.Create, &missing);
  Resolve(lib, "cudnnCreateConvolutionDescriptor", &api.CreateConvolutionDescriptor, &missing);
  Resolve(lib, "cudnnCreateFilterDescriptor", &api.CreateFilterDescriptor, &missing);
  Resolve(lib, "cudnnCreateTensorDescriptor", &api.CreateTensorDescriptor, &missing);
  Resolve(lib, "cudnnDestroy", &api.Destroy, &missing);
  Resolve(lib, "cudnnDestroyConvolutionDescriptor", &api.DestroyConvolutionDescriptor, &missing);
  Resolve(lib, "cudnnDestroyFilterDescriptor", &api.DestroyFilterDescriptor, &missing);
  Resolve(lib, "cudnnDestroyTensorDescriptor", &api.DestroyTensorDescriptor, &missing);
  Resolve(lib, "cudnnFindConvolutionBackwardDataAlgorithm", &api.FindConvolutionBackwardDataAlgorithm, &missing);
  Resolve(lib, "cudnnFindConvolutionForwardAlgorithm", &api.FindConvolutionForwardAlgorithm, &missing);
  Resolve(lib, "cudnnGetConvolutionBackwardDataAlgorithm_v7", &api.GetConvolutionBackwardDataAlgorithm_v7, &missing);
  Resolve(lib, "cudnnGetConvolutionBackwardDataWorkspaceSize", &api.GetConvolutionBackwardDataWorkspaceSize, &missing);
  Resolve(lib, "cudnnGetConvolutionForwardAlgorithm_v7", &api.GetConvolutionForwardAlgorithm_v7, &missing);
  Resolve(lib, "cudnnGetConvolutionForwardWorkspaceSize", &api.GetConvolutionForwardWorkspaceSize, &missing);
  Resolve(lib, "cudnnGetErrorString", &api.GetErrorString, &missing);
  Resolve(lib, "cudnnGetVersion", &api.GetVersion, &missing);
  Resolve(lib, "cudnnSetConvolutionGroupCount", &api.SetConvolutionGroupCount, &missing);
  Resolve(lib, "cudnnSetConvolutionMathType", &api.SetConvolutionMathType, &missing);
  Resolve(lib, "cudnnSetConvolutionNdDescriptor", &api.SetConvolutionNdDescriptor, &missing);
  Resolve(lib, "cudnnSetFilterNdDescriptor", &api.SetFilterNdDescriptor, &missing);
  Resolve(lib, "cudnnSetStream", &api.SetStream, &missing);
  Resolve(lib, "cudnnSetTensorNdDescriptor", &api.SetTensorNdDescriptor, &missing);
  if (!missing.empty()) return Unavailable("cuDNN (", soname, ") lacks ", missing);
  return &api;
}

}  // namespace

Result<const CudnnApi*> LoadCudnn() {
  static const Result<const CudnnApi*> loaded = Load();
  return loaded;
}

const CudnnApi& dnn() { return api; }

const char* CudnnStatusText(cudnnStatus_t status) {
  auto loaded = LoadCudnn();
  if (loaded.ok()) return (*loaded)->GetErrorString(status);
  return "cuDNN error (library not loaded)";
}

}  // namespace itkit::cuda
