// Matrix products on the GPU through cuBLAS, with the row-major contract of cpu::gemm.
#include <climits>

#include "cuda/blas.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

// C = beta * C for C (m x n, row stride ldc): the k == 0 case, where the product is empty.
// Each thread owns elements e = i * n + j of C in a grid-stride loop.
__global__ void scale_matrix_kernel(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t e : grid_stride(m * n)) {
    const int64_t i = e / n;
    const int64_t j = e - i * n;
    c[i * ldc + j] *= beta;
  }
}

bool fits_int(int64_t v) { return v <= INT_MAX; }

}  // namespace

// cuBLAS is column-major. A row-major matrix M (r x c, row stride ld) read column-major is M^T
// (c x r, leading dimension ld). So the row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T: one column-major GEMM with the operands (and m, n) swapped and the same
// transpose flags. With the handle in CUBLAS_DEFAULT_MATH, Sgemm runs in full fp32 (no TF32).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  SYNCBN_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=", m, " n=", n, " k=", k);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // BLAS semantics: C = beta * C, and beta == 0 writes zeros without reading C.
    if (beta == 1.0f) return;
    if (beta == 0.0f) {
      SYNCBN_CUDA_CHECK(cudaMemset2DAsync(c, static_cast<std::size_t>(ldc) * sizeof(float), 0,
                                          static_cast<std::size_t>(n) * sizeof(float),
                                          static_cast<std::size_t>(m), stream()));
    } else {
      launch(scale_matrix_kernel, blocks_for(m * n), kThreads, m, n, beta, c, ldc);
    }
    return;
  }
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) && fits_int(ldb) &&
      fits_int(ldc)) {
    SYNCBN_CUBLAS_CHECK(cublasSgemm(cublas(), op_b, op_a, static_cast<int>(n), static_cast<int>(m),
                                    static_cast<int>(k), &alpha, b, static_cast<int>(ldb), a,
                                    static_cast<int>(lda), &beta, c, static_cast<int>(ldc)));
  } else {
    SYNCBN_CUBLAS_CHECK(
        cublasSgemm_64(cublas(), op_b, op_a, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
  }
}

}  // namespace syncbn::cuda
