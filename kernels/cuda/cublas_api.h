// cuBLAS, opened with dlopen on first use instead of being linked.
//
// Why: libcublasLt carries about 94 KB of static TLS. A linked library's static
// TLS is carved out of every thread's stack, and CivetWeb (Debian's build)
// creates its workers with 100 KB stacks, so a server linked against cuBLAS could
// not start a single HTTP thread (pthread_create: EINVAL). Libraries opened with
// dlopen get their TLS allocated on demand instead. It also lets a binary built
// with CUDA start on a machine without cuBLAS (the backend then says why).
#pragma once

#include <cublas_v2.h>

#include "itkit/status.h"

namespace itkit::cuda {

// The entry points the backend uses (names as exported by libcublas).
struct CublasApi {
  cublasStatus_t (*Create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*Destroy)(cublasHandle_t) = nullptr;
  cublasStatus_t (*SetStream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*SetMathMode)(cublasHandle_t, cublasMath_t) = nullptr;
  cublasStatus_t (*GetVersion)(cublasHandle_t, int*) = nullptr;
  const char* (*GetStatusString)(cublasStatus_t) = nullptr;
  cublasStatus_t (*GemmStridedBatchedEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                         const void*, const void*, cudaDataType, int, long long, const void*,
                                         cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                         long long, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

// Loads libcublas.so.<major> once (thread-safe); later calls return the same table
// or the same error.
Result<const CublasApi*> Cublas();

// cuBLAS's description of a status; works before/without a successful load.
const char* CublasStatusText(cublasStatus_t status);

}  // namespace itkit::cuda
