// cuDNN, opened with dlopen when the CUDA backend starts instead of being linked,
// like cuBLAS (cublas_api.h): a binary built with CUDA then starts, and runs on
// the CPU with a clear reason, on a machine without cuDNN (a CPU-only host, a moved
// Python wheel), instead of failing in the dynamic loader before main.
#pragma once

#include <cudnn.h>

#include "itkit/status.h"

namespace itkit::cuda {

// The entry points the backend uses, named without the "cudnn" prefix.
struct CudnnApi {
  decltype(&::cudnnConvolutionBackwardData) ConvolutionBackwardData = nullptr;
  decltype(&::cudnnConvolutionForward) ConvolutionForward = nullptr;
  decltype(&::cudnnCreate) Create = nullptr;
  decltype(&::cudnnCreateConvolutionDescriptor) CreateConvolutionDescriptor = nullptr;
  decltype(&::cudnnCreateFilterDescriptor) CreateFilterDescriptor = nullptr;
  decltype(&::cudnnCreateTensorDescriptor) CreateTensorDescriptor = nullptr;
  decltype(&::cudnnDestroy) Destroy = nullptr;
  decltype(&::cudnnDestroyConvolutionDescriptor) DestroyConvolutionDescriptor = nullptr;
  decltype(&::cudnnDestroyFilterDescriptor) DestroyFilterDescriptor = nullptr;
  decltype(&::cudnnDestroyTensorDescriptor) DestroyTensorDescriptor = nullptr;
  decltype(&::cudnnFindConvolutionBackwardDataAlgorithm) FindConvolutionBackwardDataAlgorithm = nullptr;
  decltype(&::cudnnFindConvolutionForwardAlgorithm) FindConvolutionForwardAlgorithm = nullptr;
  decltype(&::cudnnGetConvolutionBackwardDataAlgorithm_v7) GetConvolutionBackwardDataAlgorithm_v7 = nullptr;
  decltype(&::cudnnGetConvolutionBackwardDataWorkspaceSize) GetConvolutionBackwardDataWorkspaceSize = nullptr;
  decltype(&::cudnnGetConvolutionForwardAlgorithm_v7) GetConvolutionForwardAlgorithm_v7 = nullptr;
  decltype(&::cudnnGetConvolutionForwardWorkspaceSize) GetConvolutionForwardWorkspaceSize = nullptr;
  decltype(&::cudnnGetErrorString) GetErrorString = nullptr;
  decltype(&::cudnnGetVersion) GetVersion = nullptr;
  decltype(&::cudnnSetConvolutionGroupCount) SetConvolutionGroupCount = nullptr;
  decltype(&::cudnnSetConvolutionMathType) SetConvolutionMathType = nullptr;
  decltype(&::cudnnSetConvolutionNdDescriptor) SetConvolutionNdDescriptor = nullptr;
  decltype(&::cudnnSetFilterNdDescriptor) SetFilterNdDescriptor = nullptr;
  decltype(&::cudnnSetStream) SetStream = nullptr;
  decltype(&::cudnnSetTensorNdDescriptor) SetTensorNdDescriptor = nullptr;
  // The graph ("backend") API: optional (null where the library lacks it; then only
  // the convolution API above is used).
  decltype(&::cudnnBackendCreateDescriptor) BackendCreateDescriptor = nullptr;
  decltype(&::cudnnBackendDestroyDescriptor) BackendDestroyDescriptor = nullptr;
  decltype(&::cudnnBackendSetAttribute) BackendSetAttribute = nullptr;
  decltype(&::cudnnBackendGetAttribute) BackendGetAttribute = nullptr;
  decltype(&::cudnnBackendFinalize) BackendFinalize = nullptr;
  decltype(&::cudnnBackendExecute) BackendExecute = nullptr;
  bool has_graph_api() const {
    return BackendCreateDescriptor && BackendDestroyDescriptor && BackendSetAttribute && BackendGetAttribute &&
           BackendFinalize && BackendExecute;
  }
};

// Loads libcudnn.so.<major> once (thread-safe); later calls return the same table
// or the same error.
Result<const CudnnApi*> LoadCudnn();

// The loaded table. Only for code that runs after LoadCudnn() succeeded, which
// every CUDA context's creation checks first.
const CudnnApi& dnn();

// "CUDNN_STATUS_..." text; works before/without a successful load.
const char* CudnnStatusText(cudnnStatus_t status);

}  // namespace itkit::cuda
