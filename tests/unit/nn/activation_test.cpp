#include "syncbn/nn/activation.h"

#include <gtest/gtest.h>

#include <cmath>

#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::random_tensor;

// Values at least 0.1 away from the kink at 0, so central differences with h = 0.01 are exact.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Tensor x = random_tensor(shape, seed);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float& v = x.data()[i];
    v = v >= 0.0f ? v + 0.1f : v - 0.1f;
  }
  return x;
}

TEST(ReLUTest, ForwardIsMaxOfInputAndZero) {
  nn::ReLU relu;
  Tensor x = Tensor::from_vector({2, 3}, {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f, -1e-30f});
  Tensor y = relu.forward(x);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0.0f, 0.0f, 0.0f, 0.5f, 3.0f, 0.0f}));
  // NaN passes through, as in PyTorch.
  EXPECT_TRUE(std::isnan(relu.forward(Tensor::full({1}, std::nanf(""))).to_vector()[0]));
}

TEST(ReLUTest, BackwardPassesGradientOnlyWherePositiveAndZeroAtZero) {
  nn::ReLU relu;
  relu.forward(Tensor::from_vector({4}, {-1.0f, 0.0f, 2.0f, 1e-20f}));
  Tensor dx = relu.backward(Tensor::from_vector({4}, {5.0f, 6.0f, 7.0f, 8.0f}));
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{0.0f, 0.0f, 7.0f, 8.0f}));
}

TEST(ReLUTest, BackwardMatchesFiniteDifferences) {
  nn::ReLU relu;
  check_gradients(relu, away_from_zero({2, 3, 4, 5}, 1));
}

TEST(ReLUTest, LargeInputTakesTheParallelPathWithTheSameResult) {
  nn::ReLU relu;
  Tensor x = random_tensor({200, 300}, 2);
  Tensor dy = random_tensor({200, 300}, 3);
  const auto y = relu.forward(x).to_vector();
  const auto dx = relu.backward(dy).to_vector();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool positive = x.data()[i] > 0.0f;
    ASSERT_EQ(y[i], positive ? x.data()[i] : 0.0f) << "at " << i;
    ASSERT_EQ(dx[i], positive ? dy.data()[i] : 0.0f) << "at " << i;
  }
}

TEST(ReLUTest, EmptyBatchAndShapeErrors) {
  nn::ReLU relu;
  EXPECT_THROW(relu.backward(Tensor::zeros({2})), Error);  // before any forward
  EXPECT_EQ(relu.forward(Tensor::zeros({0, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(relu.backward(Tensor::zeros({0, 4})).shape(), (Shape{0, 4}));
  relu.forward(Tensor::zeros({2, 3}));
  EXPECT_THROW(relu.backward(Tensor::zeros({3, 2})), Error);
  EXPECT_EQ(relu.type_name(), "ReLU");
  EXPECT_EQ(relu.describe(), "");
}

}  // namespace
}  // namespace syncbn
