#include "syncbn/nn/loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "support/close.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using testing::expect_close;
using testing::random_tensor;

TEST(CrossEntropyLossTest, MatchesHandComputedValue) {
  nn::CrossEntropyLoss loss;
  // Row 0, label 2: log(e^1 + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2) = 0.4076059644.
  // Row 1, label 0: log(3 e^1) - 1 = log 3 = 1.0986122887. Mean: 0.7531091266.
  Tensor logits = Tensor::from_vector({2, 3}, {1.0f, 2.0f, 3.0f, 1.0f, 1.0f, 1.0f});
  EXPECT_NEAR(loss.forward(logits, {2, 0}), 0.7531091266, 1e-6);
  // Row 0's argmax is 2 (a hit); row 1 ties, and the first maximum, 0, is its label.
  EXPECT_EQ(loss.correct(), 2);
  // dlogits = (softmax - onehot) / 2; row 1's softmax is 1/3 everywhere.
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), z = e1 + e2 + e3;
  expect_close(loss.backward().to_vector(),
               {e1 / z / 2, e2 / z / 2, (e3 / z - 1) / 2, (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6},
               1e-6, 1e-7, "dlogits");
}

TEST(CrossEntropyLossTest, BackwardMatchesFiniteDifferences) {
  nn::CrossEntropyLoss loss;
  Tensor logits = random_tensor({5, 7}, 1, 2.0f);
  const std::vector<int32_t> labels{0, 6, 3, 3, 1};
  loss.forward(logits, labels);
  const auto dlogits = loss.backward().to_vector();
  const double h = 1e-2;
  std::vector<double> expected(dlogits.size());
  for (int64_t i = 0; i < logits.numel(); ++i) {
    float& v = logits.data()[i];
    const float saved = v;
    v = static_cast<float>(saved + h);
    const double plus = loss.forward(logits, labels);
    v = static_cast<float>(saved - h);
    const double minus = loss.forward(logits, labels);
    v = saved;
    expected[i] = (plus - minus) / (2 * h);
  }
  expect_close(dlogits, expected, 2e-2, 2e-4, "dlogits");
}

TEST(CrossEntropyLossTest, LargeLogitsStayFinite) {
  nn::CrossEntropyLoss loss;
  // Row 0, label 1: log(e^1000 + e^0) - 0 = 1000; row 1, label 0: log(1 + e^-2000) = 0.
  Tensor logits = Tensor::from_vector({2, 2}, {1000.0f, 0.0f, 0.0f, -2000.0f});
  EXPECT_NEAR(loss.forward(logits, {1, 0}), 500.0, 1e-3);
  for (float v : loss.backward().to_vector()) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(loss.correct(), 1);
}

TEST(CrossEntropyLossTest, OutOfRangeLabelNamesTheLabelAndClassCount) {
  nn::CrossEntropyLoss loss;
  try {
    loss.forward(Tensor::zeros({2, 3}), {0, 5});
    FAIL() << "expected syncbn::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("label 5"), std::string::npos) << message;
    EXPECT_NE(message.find("3 classes"), std::string::npos) << message;
  }
  EXPECT_THROW(loss.forward(Tensor::zeros({2, 3}), {-1, 0}), Error);
}

TEST(CrossEntropyLossTest, EmptyBatchGivesZeroLossAndEmptyGradient) {
  nn::CrossEntropyLoss loss;
  EXPECT_EQ(loss.forward(Tensor::zeros({0, 10}), {}), 0.0f);
  EXPECT_EQ(loss.correct(), 0);
  EXPECT_EQ(loss.backward().shape(), (Shape{0, 10}));
}

TEST(CrossEntropyLossTest, WrongShapesThrow) {
  nn::CrossEntropyLoss loss;
  EXPECT_THROW(loss.backward(), Error);  // before any forward
  EXPECT_THROW(loss.forward(Tensor::zeros({6}), {0, 1, 2, 0, 1, 2}), Error);
  EXPECT_THROW(loss.forward(Tensor::zeros({2, 3}), {0}), Error);
  EXPECT_THROW(loss.forward(Tensor::zeros({2, 3, 1}), {0, 1}), Error);
}

}  // namespace
}  // namespace syncbn
