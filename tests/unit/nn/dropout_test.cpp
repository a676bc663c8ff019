#include "syncbn/nn/dropout.h"

#include <gtest/gtest.h>

#include <cmath>

#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"
#include "syncbn/threads.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::random_tensor;

TEST(DropoutTest, EvalIsTheIdentity) {
  nn::Dropout dropout(0.5f, 1);
  dropout.eval();
  Tensor x = random_tensor({3, 7}, 2);
  EXPECT_EQ(dropout.forward(x).to_vector(), x.to_vector());
  Tensor dy = random_tensor({3, 7}, 3);
  EXPECT_EQ(dropout.backward(dy).to_vector(), dy.to_vector());
  check_gradients(dropout, x);
}

TEST(DropoutTest, TrainingZeroesAFractionPAndScalesTheRestByOneOverKeep) {
  const float p = 0.3f;
  const int64_t n = 200000;
  nn::Dropout dropout(p, 4);
  Tensor x = random_tensor({n}, 5);
  const auto y = dropout.forward(x).to_vector();
  int64_t zeros = 0;
  double sum_y = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] == 0.0f) {
      ++zeros;
    } else {
      ASSERT_FLOAT_EQ(y[i], x.data()[i] / (1.0f - p)) << "at " << i;
    }
    sum_y += y[i] / x.data()[i];
  }
  // Binomial(n, p): the zero fraction is within 5 standard deviations of p.
  const double sigma = std::sqrt(p * (1.0 - p) / n);
  EXPECT_NEAR(double(zeros) / n, p, 5 * sigma);
  // E[y / x] = 1: inverted dropout keeps the expectation.
  EXPECT_NEAR(sum_y / n, 1.0, 5 * sigma / (1.0 - p));
}

TEST(DropoutTest, BackwardAppliesTheForwardMask) {
  nn::Dropout dropout(0.5f, 6);
  const Tensor ones = Tensor::full({1000}, 1.0f);
  const auto mask = dropout.forward(ones).to_vector();  // y = mask for x = 1
  Tensor dy = random_tensor({1000}, 7);
  const auto dx = dropout.backward(dy).to_vector();
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(dx[i], dy.data()[i] * mask[i]) << "at " << i;
}

TEST(DropoutTest, MasksChangeEachForwardAndRepeatWithTheSeed) {
  nn::Dropout a(0.5f, 8), b(0.5f, 8), c(0.5f, 9);
  const Tensor ones = Tensor::full({256}, 1.0f);
  const auto a1 = a.forward(ones).to_vector();
  const auto a2 = a.forward(ones).to_vector();
  EXPECT_NE(a1, a2);
  EXPECT_EQ(b.forward(ones).to_vector(), a1);
  EXPECT_EQ(b.forward(ones).to_vector(), a2);
  EXPECT_NE(c.forward(ones).to_vector(), a1);
}

TEST(DropoutTest, MaskDoesNotDependOnTheThreadCount) {
  const int saved_threads = num_threads();
  const Tensor ones = Tensor::full({100000}, 1.0f);
  set_num_threads(1);
  const auto single = nn::Dropout(0.4f, 10).forward(ones).to_vector();
  set_num_threads(3);
  const auto three = nn::Dropout(0.4f, 10).forward(ones).to_vector();
  set_num_threads(saved_threads);
  EXPECT_EQ(single, three);
}

TEST(DropoutTest, PZeroIsIdentityAndPOneZeroesEverything) {
  Tensor x = random_tensor({4, 5}, 11);
  nn::Dropout keep_all(0.0f);
  EXPECT_EQ(keep_all.forward(x).to_vector(), x.to_vector());
  check_gradients(keep_all, x);
  nn::Dropout drop_all(1.0f);
  for (float v : drop_all.forward(x).to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : drop_all.backward(x).to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(DropoutTest, EmptyBatchBadProbabilityAndShapeErrors) {
  nn::Dropout dropout(0.5f);
  EXPECT_THROW(dropout.backward(Tensor::zeros({2})), Error);  // before any forward
  EXPECT_EQ(dropout.forward(Tensor::zeros({0, 8})).shape(), (Shape{0, 8}));
  EXPECT_EQ(dropout.backward(Tensor::zeros({0, 8})).shape(), (Shape{0, 8}));
  dropout.forward(Tensor::zeros({2, 3}));
  EXPECT_THROW(dropout.backward(Tensor::zeros({3, 2})), Error);
  EXPECT_THROW(nn::Dropout(-0.1f), Error);
  EXPECT_THROW(nn::Dropout(1.5f), Error);
  EXPECT_EQ(dropout.type_name(), "Dropout");
  EXPECT_EQ(dropout.describe(), "p=0.5, inplace=False");
  EXPECT_EQ(nn::Dropout(0.1f).describe(), "p=0.1, inplace=False");
}

}  // namespace
}  // namespace syncbn
