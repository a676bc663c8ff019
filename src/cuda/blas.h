#pragma once
// Matrix products on the GPU: a row-major front end to cuBLAS (see cpu/blas.h for the contract).
// Included by g++-compiled ops files: no CUDA types here.
#include <cstdint>

namespace syncbn::cuda {

// C = alpha * op(A) * op(B) + beta * C, all row-major device pointers; op(A) is m x k, op(B) is
// k x n, C is m x n; lda/ldb/ldc are the row strides as stored (A is k x m when trans_a).
// beta == 0 overwrites C without reading it. Full fp32 (no TF32), on cuda::stream().
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace syncbn::cuda
