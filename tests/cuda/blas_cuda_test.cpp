// cuda::gemm against cpu::gemm: every transpose combination, odd shapes, padded row strides,
// alpha/beta, the empty cases, and a long inner dimension.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/blas.h"
#include "cuda/blas.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::on_device;
using testing::random_values;

std::vector<float> absolute(std::vector<float> values) {
  for (float& v : values) v = std::fabs(v);
  return values;
}

// The CUDA and CPU products differ only by rounding, in different summation orders. Each
// result element sums k terms; the rounding error of any order is bounded by a multiple of
// eps * sum |terms| (a multiple of k in the worst case, about sqrt(k) for random rounding), not
// by the result itself, which may cancel to near zero. So an element passes when
//   |cuda - cpu| <= 1e-5 |cpu| + 2 sqrt(k) eps magnitude,
// with magnitude = |alpha| |op(A)| |op(B)| + |beta c| computed by the CPU kernel on absolute
// values. For short k the second term is far below 1e-5 of a typical element.
void expect_gemm_close(const std::vector<float>& actual, const std::vector<float>& expected,
                       const std::vector<float>& magnitude, int64_t k, const std::string& what) {
  const double eps = std::numeric_limits<float>::epsilon();
  const double spread = 2.0 * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))) * eps;
  std::vector<double> atols(magnitude.size());
  for (std::size_t i = 0; i < atols.size(); ++i) atols[i] = spread * magnitude[i] + 1e-30;
  testing::expect_close(actual, expected, 1e-5, atols, what);
}

struct GemmCase {
  int64_t m, n, k;
};

// Runs one product on both devices with row strides padded by `pad` columns and compares C,
// including the padding columns, which neither kernel may touch.
void check_gemm(const GemmCase& c, bool trans_a, bool trans_b, float alpha, float beta, int64_t pad,
                uint64_t seed) {
  const int64_t a_rows = trans_a ? c.k : c.m, a_cols = trans_a ? c.m : c.k;
  const int64_t b_rows = trans_b ? c.n : c.k, b_cols = trans_b ? c.k : c.n;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.n + pad;
  const auto a = random_values(a_rows * lda, seed);
  const auto b = random_values(b_rows * ldb, seed + 1);
  const auto c0 = random_values(c.m * ldc, seed + 2);

  std::vector<float> expected = c0;
  cpu::gemm(trans_a, trans_b, c.m, c.n, c.k, alpha, a.data(), lda, b.data(), ldb, beta,
            expected.data(), ldc);
  // |alpha| |op(A)| |op(B)| + |beta| |C|
  std::vector<float> magnitude = absolute(c0);
  const auto abs_a = absolute(a), abs_b = absolute(b);
  cpu::gemm(trans_a, trans_b, c.m, c.n, c.k, std::fabs(alpha), abs_a.data(), lda, abs_b.data(), ldb,
            std::fabs(beta), magnitude.data(), ldc);

  Tensor a_dev = on_device(a), b_dev = on_device(b), c_dev = on_device(c0);
  cuda::gemm(trans_a, trans_b, c.m, c.n, c.k, alpha, a_dev.data(), lda, b_dev.data(), ldb, beta,
             c_dev.data(), ldc);
  const std::string what = "gemm m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                           " k=" + std::to_string(c.k) + " ta=" + std::to_string(trans_a) +
                           " tb=" + std::to_string(trans_b) + " alpha=" + std::to_string(alpha) +
                           " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad);
  expect_gemm_close(c_dev.to_vector(), expected, magnitude, c.k, what);
}

TEST(BlasCudaTest, GemmMatchesCpuForEveryTransposeOddShapesAndStrides) {
  SYNCBN_REQUIRE_CUDA();
  const GemmCase cases[] = {{1, 1, 1},   {7, 13, 5},  {33, 17, 65}, {64, 1, 129},
                            {3, 100, 1}, {1, 37, 23}, {129, 65, 31}};
  const std::pair<float, float> scalars[] = {
      {1.0f, 0.0f}, {0.5f, 1.5f}, {1.0f, 1.0f}, {-2.0f, 0.25f}};
  uint64_t seed = 1;
  for (const GemmCase& c : cases) {
    for (int t = 0; t < 4; ++t) {
      for (const auto& [alpha, beta] : scalars) {
        for (int64_t pad : {0, 3}) check_gemm(c, t & 1, t & 2, alpha, beta, pad, seed += 3);
      }
    }
  }
}

TEST(BlasCudaTest, GemmWithLongInnerDimensionMatchesCpuWithinSqrtKEps) {
  SYNCBN_REQUIRE_CUDA();
  // A conv weight gradient's shape: few outputs, a long reduction.
  check_gemm({9, 11, 20011}, false, true, 1.0f, 1.0f, 0, 101);
  check_gemm({32, 27, 4099}, true, false, 1.0f, 0.0f, 1, 103);
}

TEST(BlasCudaTest, BetaZeroOverwritesNaNInC) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t m = 5, n = 7, k = 3;
  const auto a = random_values(m * k, 7), b = random_values(k * n, 8);
  std::vector<float> c(m * n, std::numeric_limits<float>::quiet_NaN());
  Tensor a_dev = on_device(a), b_dev = on_device(b), c_dev = on_device(c);
  cuda::gemm(false, false, m, n, k, 1.0f, a_dev.data(), k, b_dev.data(), n, 0.0f, c_dev.data(), n);
  std::vector<float> expected = c;
  cpu::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, expected.data(), n);
  const auto actual = c_dev.to_vector();
  for (std::size_t i = 0; i < actual.size(); ++i) ASSERT_FALSE(std::isnan(actual[i])) << i;
  testing::expect_close_rel(actual, expected, 1e-5, "beta = 0");
}

TEST(BlasCudaTest, EmptyProductsFollowBlasSemantics) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t m = 4, n = 6, ldc = 9;
  const auto c0 = random_values(m * ldc, 11);
  const std::vector<float> unused(16, 1.0f);
  Tensor a_dev = on_device(unused), b_dev = on_device(unused);
  // k = 0: C = beta * C (beta = 0 writes zeros even over NaN), padding columns untouched.
  for (float beta : {0.0f, 1.0f, 2.5f}) {
    std::vector<float> start = c0;
    if (beta == 0.0f) start[0] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> expected = start;
    cpu::gemm(false, false, m, n, 0, 1.0f, unused.data(), 1, unused.data(), n, beta,
              expected.data(), ldc);
    Tensor c_dev = on_device(start);
    cuda::gemm(false, false, m, n, 0, 1.0f, a_dev.data(), 1, b_dev.data(), n, beta, c_dev.data(),
               ldc);
    testing::expect_close_rel(c_dev.to_vector(), expected, 1e-6,
                              "k = 0, beta = " + std::to_string(beta));
  }
  // m = 0 or n = 0: nothing happens.
  Tensor c_dev = on_device(c0);
  cuda::gemm(false, false, 0, n, 3, 1.0f, a_dev.data(), 3, b_dev.data(), n, 0.0f, c_dev.data(),
             ldc);
  cuda::gemm(false, false, m, 0, 3, 1.0f, a_dev.data(), 3, b_dev.data(), 1, 0.0f, c_dev.data(),
             ldc);
  EXPECT_EQ(c_dev.to_vector(), c0);
}

}  // namespace
}  // namespace syncbn
