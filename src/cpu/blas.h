#pragma once
// Matrix products on the host: a row-major front end to OpenBLAS, parallelised with OpenMP.
//
// OpenBLAS itself runs single-threaded: its own thread pool and OpenMP's would spin against
// each other on the same cores (measured on 2 cores: a conv layer's three GEMMs between OpenMP
// loops took 26 ms with both pools, 9 ms with OpenMP splitting the GEMM), so gemm() splits the
// product into one block per OpenMP thread and calls single-threaded sgemm on each.
#include <cstdint>

namespace syncbn::cpu {

// C = alpha * op(A) * op(B) + beta * C, all row-major; op(A) is m x k, op(B) is k x n, C is
// m x n. lda/ldb/ldc are the row strides of A, B, C as stored (A is k x m when trans_a).
// As in BLAS, beta == 0 overwrites C without reading it (NaNs in C do not propagate).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace syncbn::cpu
