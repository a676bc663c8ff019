#include "syncbn/nn/linear.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ops/blas.h"
#include "support/close.h"
#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"
#include "syncbn/threads.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::expect_close;
using testing::random_tensor;

// y[i][o] = sum_j x[i][j] w[o][j] + b[o], in double.
std::vector<double> linear_reference(const Tensor& x, const Tensor& w, const Tensor* b) {
  const int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  std::vector<double> y(static_cast<std::size_t>(n * out));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = b ? b->data()[o] : 0.0;
      for (int64_t j = 0; j < in; ++j) sum += double(x.data()[i * in + j]) * w.data()[o * in + j];
      y[i * out + o] = sum;
    }
  }
  return y;
}

TEST(LinearTest, ForwardMatchesDoublePrecisionReference) {
  nn::Linear linear(7, 5, true, 3);
  Tensor x = random_tensor({3, 7}, 11);
  Tensor y = linear.forward(x);
  ASSERT_EQ(y.shape(), (Shape{3, 5}));
  expect_close(y.to_vector(), linear_reference(x, linear.weight().value, &linear.bias()->value),
               1e-5, 1e-6, "y");
}

TEST(LinearTest, BackwardMatchesFiniteDifferences) {
  nn::Linear linear(6, 4, true, 5);
  check_gradients(linear, random_tensor({3, 6}, 12));
  nn::Linear no_bias(5, 3, false, 6);
  check_gradients(no_bias, random_tensor({2, 5}, 13));
}

TEST(LinearTest, GradientsAccumulateAcrossBackwardCalls) {
  nn::Linear linear(4, 3, true, 7);
  Tensor x = random_tensor({5, 4}, 14);
  Tensor dy = random_tensor({5, 3}, 15);
  linear.forward(x);
  linear.backward(dy);
  linear.backward(dy);
  // Two backward calls: dW = 2 dy^T x, db = 2 sum_i dy[i].
  std::vector<double> dw(12, 0.0), db(3, 0.0);
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t o = 0; o < 3; ++o) {
      db[o] += 2.0 * dy.data()[i * 3 + o];
      for (int64_t j = 0; j < 4; ++j)
        dw[o * 4 + j] += 2.0 * dy.data()[i * 3 + o] * x.data()[i * 4 + j];
    }
  }
  expect_close(linear.weight().grad.to_vector(), dw, 1e-5, 1e-6, "dweight");
  expect_close(linear.bias()->grad.to_vector(), db, 1e-5, 1e-6, "dbias");
}

TEST(LinearTest, InitialisationIsUniformWithinOneOverSqrtFanIn) {
  nn::Linear linear(400, 300, true, 1);
  const double bound = 1.0 / std::sqrt(400.0);
  const auto w = linear.weight().value.to_vector();
  double sum = 0.0, sum_sq = 0.0, max_abs = 0.0;
  for (float v : w) {
    sum += v;
    sum_sq += double(v) * v;
    max_abs = std::max(max_abs, std::fabs(double(v)));
  }
  const double n = static_cast<double>(w.size());
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.99 * bound);
  EXPECT_NEAR(sum / n, 0.0, 0.01 * bound);
  EXPECT_NEAR(sum_sq / n, bound * bound / 3.0, 0.02 * bound * bound);  // var of U(-b, b)
  for (float v : linear.bias()->value.to_vector()) EXPECT_LE(std::fabs(v), bound);
  // Same seed, same weights; another seed, other weights.
  EXPECT_EQ(nn::Linear(400, 300, true, 1).weight().value.to_vector(), w);
  EXPECT_NE(nn::Linear(400, 300, true, 2).weight().value.to_vector(), w);
}

TEST(LinearTest, ParametersHavePyTorchNamesAndFlags) {
  nn::Linear linear(3, 2);
  const auto params = linear.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second->value.shape(), (Shape{2, 3}));
  EXPECT_FALSE(params[0].second->is_norm_or_bias);
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_EQ(params[1].second->value.shape(), (Shape{2}));
  EXPECT_TRUE(params[1].second->is_norm_or_bias);
  EXPECT_EQ(nn::Linear(3, 2, false).named_parameters().size(), 1u);
  EXPECT_EQ(linear.type_name(), "Linear");
  EXPECT_EQ(linear.describe(), "in_features=3, out_features=2, bias=True");
  EXPECT_EQ(nn::Linear(784, 256, false).describe(),
            "in_features=784, out_features=256, bias=False");
}

TEST(LinearTest, EmptyBatchGivesEmptyOutputAndZeroGradients) {
  nn::Linear linear(4, 3);
  Tensor y = linear.forward(Tensor::zeros({0, 4}));
  EXPECT_EQ(y.shape(), (Shape{0, 3}));
  Tensor dx = linear.backward(Tensor::zeros({0, 3}));
  EXPECT_EQ(dx.shape(), (Shape{0, 4}));
  for (float v : linear.weight().grad.to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : linear.bias()->grad.to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(LinearTest, WrongShapesThrow) {
  nn::Linear linear(4, 3);
  EXPECT_THROW(linear.backward(Tensor::zeros({2, 3})), Error);  // before any forward
  EXPECT_THROW(linear.forward(Tensor::zeros({2, 5})), Error);
  EXPECT_THROW(linear.forward(Tensor::zeros({2, 2, 2})), Error);
  EXPECT_THROW(linear.forward(Tensor::zeros({4})), Error);
  linear.forward(Tensor::zeros({2, 4}));
  EXPECT_THROW(linear.backward(Tensor::zeros({2, 4})), Error);
  EXPECT_THROW(linear.backward(Tensor::zeros({3, 3})), Error);
  EXPECT_THROW(nn::Linear(0, 3), Error);
}

// C = alpha op(A) op(B) + beta C in double, row-major.
std::vector<double> gemm_reference(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                                   const Tensor& a, const Tensor& b, float beta, const Tensor& c) {
  std::vector<double> out(static_cast<std::size_t>(m * n));
  const int64_t lda = a.size(1), ldb = b.size(1);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a.data()[p * lda + i] : a.data()[i * lda + p];
        const double bv = tb ? b.data()[j * ldb + p] : b.data()[p * ldb + j];
        sum += av * bv;
      }
      out[i * n + j] = alpha * sum + beta * double(c.data()[i * n + j]);
    }
  }
  return out;
}

// Shapes that take each way of splitting the product over threads: by columns (wide C), by
// rows (tall C), by the inner dimension (small C, long k), and unsplit (small work).
TEST(GemmTest, EverySplitAndTransposeMatchesDoubleReference) {
  const int saved_threads = num_threads();
  set_num_threads(3);  // an uneven split
  struct Case {
    int64_t m, n, k;
  };
  uint64_t seed = 100;
  for (const Case& s : {Case{20, 517, 40}, Case{300, 12, 90}, Case{7, 9, 6000}, Case{5, 6, 7}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      Tensor a = random_tensor(ta ? Shape{s.k, s.m} : Shape{s.m, s.k}, ++seed);
      Tensor b = random_tensor(tb ? Shape{s.n, s.k} : Shape{s.k, s.n}, ++seed);
      Tensor c = random_tensor({s.m, s.n}, ++seed);
      const auto expected = gemm_reference(ta, tb, s.m, s.n, s.k, 0.5f, a, b, 0.75f, c);
      ops::gemm(a, ta, b, tb, 0.5f, 0.75f, c);
      expect_close(c.to_vector(), expected, 1e-4, 1e-4,
                   "gemm " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                       std::to_string(s.k) + " case " + std::to_string(t));
    }
  }
  set_num_threads(saved_threads);
}

TEST(GemmTest, BetaZeroIgnoresNaNInOutputAndEmptyInnerDimensionScales) {
  Tensor a = random_tensor({3, 4}, 1), b = random_tensor({4, 2}, 2);
  Tensor c = Tensor::full({3, 2}, std::nanf(""));
  ops::gemm(a, false, b, false, 1.0f, 0.0f, c);
  for (float v : c.to_vector()) EXPECT_FALSE(std::isnan(v));
  Tensor c2 = Tensor::full({3, 2}, 2.0f);
  ops::gemm(Tensor::zeros({3, 0}), false, Tensor::zeros({0, 2}), false, 1.0f, 0.5f, c2);
  for (float v : c2.to_vector()) EXPECT_EQ(v, 1.0f);
  EXPECT_THROW(ops::gemm(a, false, a, false, 1.0f, 0.0f, c), Error);
}

}  // namespace
}  // namespace syncbn
