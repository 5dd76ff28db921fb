#include "cuda/cudnn_api.h"

#include <string>

#include "cuda/shared_library.h"

namespace itkit::cuda {
namespace {

CudnnApi api;  // filled once by Load(); read-only afterwards

Result<const CudnnApi*> Load() {
  const std::string soname = StrCat("libcudnn.so.", CUDNN_MAJOR);
  // Fallback: the folder found at build time (e.g. a pip wheel's).
  ITKIT_ASSIGN_OR_RETURN(void* lib, OpenSharedLibrary(soname, ITKIT_CUDNN_DIR, "cuDNN"));
  std::string missing;
  ResolveSymbol(lib, "cudnnConvolutionBackwardData", &api.ConvolutionBackwardData, &missing);
  ResolveSymbol(lib, "cudnnConvolutionForward", &api.ConvolutionForward, &missing);
  ResolveSymbol(lib, "cudnnCreate", &api.Create, &missing);
  ResolveSymbol(lib, "cudnnCreateConvolutionDescriptor", &api.CreateConvolutionDescriptor, &missing);
  ResolveSymbol(lib, "cudnnCreateFilterDescriptor", &api.CreateFilterDescriptor, &missing);
  ResolveSymbol(lib, "cudnnCreateTensorDescriptor", &api.CreateTensorDescriptor, &missing);
  ResolveSymbol(lib, "cudnnDestroy", &api.Destroy, &missing);
  ResolveSymbol(lib, "cudnnDestroyConvolutionDescriptor", &api.DestroyConvolutionDescriptor, &missing);
  ResolveSymbol(lib, "cudnnDestroyFilterDescriptor", &api.DestroyFilterDescriptor, &missing);
  ResolveSymbol(lib, "cudnnDestroyTensorDescriptor", &api.DestroyTensorDescriptor, &missing);
  ResolveSymbol(lib, "cudnnFindConvolutionBackwardDataAlgorithm", &api.FindConvolutionBackwardDataAlgorithm, &missing);
  ResolveSymbol(lib, "cudnnFindConvolutionForwardAlgorithm", &api.FindConvolutionForwardAlgorithm, &missing);
  ResolveSymbol(lib, "cudnnGetConvolutionBackwardDataAlgorithm_v7", &api.GetConvolutionBackwardDataAlgorithm_v7, &missing);
  ResolveSymbol(lib, "cudnnGetConvolutionBackwardDataWorkspaceSize", &api.GetConvolutionBackwardDataWorkspaceSize, &missing);
  ResolveSymbol(lib, "cudnnGetConvolutionForwardAlgorithm_v7", &api.GetConvolutionForwardAlgorithm_v7, &missing);
  ResolveSymbol(lib, "cudnnGetConvolutionForwardWorkspaceSize", &api.GetConvolutionForwardWorkspaceSize, &missing);
  ResolveSymbol(lib, "cudnnGetErrorString", &api.GetErrorString, &missing);
  ResolveSymbol(lib, "cudnnGetVersion", &api.GetVersion, &missing);
  ResolveSymbol(lib, "cudnnSetConvolutionGroupCount", &api.SetConvolutionGroupCount, &missing);
  ResolveSymbol(lib, "cudnnSetConvolutionMathType", &api.SetConvolutionMathType, &missing);
  ResolveSymbol(lib, "cudnnSetConvolutionNdDescriptor", &api.SetConvolutionNdDescriptor, &missing);
  ResolveSymbol(lib, "cudnnSetFilterNdDescriptor", &api.SetFilterNdDescriptor, &missing);
  ResolveSymbol(lib, "cudnnSetStream", &api.SetStream, &missing);
  ResolveSymbol(lib, "cudnnSetTensorNdDescriptor", &api.SetTensorNdDescriptor, &missing);
  if (!missing.empty()) return Unavailable("cuDNN (", soname, ") lacks ", missing);
  std::string missing_graph;  // optional: the graph API
  ResolveSymbol(lib, "cudnnBackendCreateDescriptor", &api.BackendCreateDescriptor, &missing_graph);
  ResolveSymbol(lib, "cudnnBackendDestroyDescriptor", &api.BackendDestroyDescriptor, &missing_graph);
  ResolveSymbol(lib, "cudnnBackendSetAttribute", &api.BackendSetAttribute, &missing_graph);
  ResolveSymbol(lib, "cudnnBackendGetAttribute", &api.BackendGetAttribute, &missing_graph);
  ResolveSymbol(lib, "cudnnBackendFinalize", &api.BackendFinalize, &missing_graph);
  ResolveSymbol(lib, "cudnnBackendExecute", &api.BackendExecute, &missing_graph);
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
