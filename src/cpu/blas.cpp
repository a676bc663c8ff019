#include "cpu/blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "syncbn/error.h"
#include "syncbn/threads.h"

extern "C" void openblas_set_num_threads(int);

namespace syncbn::cpu {

namespace {

// Below this many multiply-adds one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelWork = 1 << 18;
// Column blocks start on a multiple of 16 floats (a 64-byte line), so threads never share a
// cache line of C.
constexpr int64_t kColumnAlignment = 16;

void keep_openblas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// [begin, end) of part t of `total` split into `parts` blocks starting on multiples of `align`.
std::pair<int64_t, int64_t> block(int64_t total, int parts, int t, int64_t align) {
  auto start = [&](int i) {
    if (i >= parts) return total;
    return std::min(total, total * i / parts / align * align);
  };
  return {start(t), start(t + 1)};
}

// C = beta * C (BLAS semantics: beta == 0 writes zeros without reading C).
void scale_matrix(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + n, 0.0f);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

// Splits the inner dimension k: thread t computes the partial product over its k block; thread
// 0 adds it to beta * C, the others into scratch rows that are then summed into C. Used when C
// is too small to split (a conv weight gradient with few channels: m = 32, n = 9, k = 50176).
void gemm_split_k(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, int threads) {
  thread_local std::vector<float> scratch;
  const int64_t tile = m * n;
  scratch.resize(static_cast<std::size_t>(tile * (threads - 1)));
  float* partials = scratch.data();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const auto [p0, p1] = block(k, threads, t, 1);
    const float* a_block = trans_a ? a + p0 * lda : a + p0;
    const float* b_block = trans_b ? b + p0 : b + p0 * ldb;
    if (t == 0) {
      if (p1 > p0) {
        sgemm(trans_a, trans_b, m, n, p1 - p0, alpha, a_block, lda, b_block, ldb, beta, c, ldc);
      } else {
        scale_matrix(m, n, beta, c, ldc);
      }
    } else {
      float* partial = partials + (t - 1) * tile;
      if (p1 > p0) {
        sgemm(trans_a, trans_b, m, n, p1 - p0, alpha, a_block, lda, b_block, ldb, 0.0f, partial, n);
      } else {
        std::fill(partial, partial + tile, 0.0f);
      }
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      for (int s = 0; s < threads - 1; ++s) {
        const float* partial_row = partials + s * tile + i * n;
        float* row = c + i * ldc;
        for (int64_t j = 0; j < n; ++j) row[j] += partial_row[j];
      }
    }
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  SYNCBN_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=", m, " n=", n, " k=", k);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_matrix(m, n, beta, c, ldc);
    return;
  }
  keep_openblas_single_threaded();
  const int threads = num_threads();
  if (threads == 1 || m * n * k < kParallelWork) {
    sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split C by columns when it is wide, by rows when it is tall, else split k.
  const int64_t min_block = 32;
  if (n >= min_block * threads && n >= m) {
#pragma omp parallel num_threads(threads)
    {
      const auto [j0, j1] = block(n, threads, omp_get_thread_num(), kColumnAlignment);
      if (j1 > j0) {
        sgemm(trans_a, trans_b, m, j1 - j0, k, alpha, a, lda, trans_b ? b + j0 * ldb : b + j0, ldb,
              beta, c + j0, ldc);
      }
    }
  } else if (m >= min_block * threads / 4) {
    // Rows are independent cache lines already when ldc >= 16; short blocks are fine.
#pragma omp parallel num_threads(threads)
    {
      const auto [i0, i1] = block(m, threads, omp_get_thread_num(), 1);
      if (i1 > i0) {
        sgemm(trans_a, trans_b, i1 - i0, n, k, alpha, trans_a ? a + i0 : a + i0 * lda, lda, b, ldb,
              beta, c + i0 * ldc, ldc);
      }
    }
  } else if (k >= 256 * threads) {
    gemm_split_k(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
  } else {
    sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace syncbn::cpu
