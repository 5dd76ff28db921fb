// The matmul family on the CPU: MatMul (numpy batching/broadcasting, 1-D operands)
// and Gemm. matmul_reference.cpp: naive loops in double; matmul.cpp: oneDNN's
// JIT sgemm per matrix, batches spread over the session's threads when small.
#pragma once

#include <cstdint>
#include <memory>

#include "itkit/backend.h"
#include "itkit/thread_pool.h"

namespace itkit::cpu {

// Row-major C[m,n] = alpha * op(A) * op(B) + beta * C, op = optional transpose,
// with leading dimensions as in BLAS (row-major).
void GemmReference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                   int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

enum class MatMulImpl { kAuto, kReference };

// MatMul or Gemm.
Result<std::unique_ptr<OpKernel>> CreateMatMulKernel(const NodeSignature& sig, MatMulImpl impl);

}  // namespace itkit::cpu
