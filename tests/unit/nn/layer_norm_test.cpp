#include "syncbn/nn/layer_norm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::expect_close;
using testing::random_tensor;

// LayerNorm over rows of D trailing values in double, two-pass statistics:
//   y = w_i (x - mean) / sqrt(var + eps) + b_i
std::vector<double> reference_layer_norm(const std::vector<float>& x, int64_t d,
                                         const std::vector<float>& w, const std::vector<float>& b,
                                         double eps = 1e-5) {
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < x.size() / d; ++r) {
    const float* row = x.data() + r * d;
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < d; ++i) mean += row[i];
    mean /= d;
    for (int64_t i = 0; i < d; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= d;
    for (int64_t i = 0; i < d; ++i) {
      y[r * d + i] = (w.empty() ? 1.0 : w[i]) * (row[i] - mean) / std::sqrt(var + eps) +
                     (b.empty() ? 0.0 : b[i]);
    }
  }
  return y;
}

void set_values(Tensor t, const std::vector<float>& values) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.data());
}

void randomize_affine(nn::LayerNorm& ln, uint64_t seed) {
  const Shape shape = ln.normalized_shape();
  set_values(ln.weight()->value, random_tensor(shape, seed, 0.5f, 1.0f).to_vector());
  set_values(ln.bias()->value, random_tensor(shape, seed + 1, 0.5f).to_vector());
}

TEST(LayerNormTest, ParametersHaveTheNormalizedShapeAndPrintLikePyTorch) {
  nn::LayerNorm ln({3, 4});
  const auto params = ln.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_EQ(params[0].second->value.shape(), (Shape{3, 4}));
  EXPECT_EQ(params[0].second->value.to_vector(), std::vector<float>(12, 1.0f));
  EXPECT_EQ(params[1].second->value.to_vector(), std::vector<float>(12, 0.0f));
  EXPECT_TRUE(params[1].second->is_norm_or_bias);
  EXPECT_EQ(ln.str(), "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)");
  nn::LayerNorm plain({4}, 1e-5, false);
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_EQ(plain.str(), "LayerNorm((4,), eps=1e-05, elementwise_affine=False)");
}

TEST(LayerNormTest, RejectsInputNotEndingWithTheNormalizedShape) {
  nn::LayerNorm ln({3, 4});
  try {
    ln.forward(Tensor::zeros({2, 4, 3}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 4, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ln.forward(Tensor::zeros({4})), Error);
}

TEST(LayerNormTest, ForwardMatchesDoubleReference) {
  nn::LayerNorm ln({3, 4});
  randomize_affine(ln, 1);
  const Tensor x = random_tensor({2, 3, 3, 4}, 2, 2.0f, -1.0f);
  const Tensor y = ln.forward(x);
  EXPECT_EQ(y.shape(), x.shape());
  expect_close(y.to_vector(),
               reference_layer_norm(x.to_vector(), 12, ln.weight()->value.to_vector(),
                                    ln.bias()->value.to_vector()),
               1e-5, 1e-5, "y");
}

TEST(LayerNormTest, LargeMeanIsNormalisedAccurately) {
  nn::LayerNorm ln({64}, 1e-5, false);
  const Tensor x = random_tensor({8, 64}, 3, 1.0f, 1e4f);
  expect_close(ln.forward(x).to_vector(), reference_layer_norm(x.to_vector(), 64, {}, {}), 0.0,
               2e-3, "y");
}

TEST(LayerNormTest, BackwardMatchesFiniteDifferences) {
  nn::LayerNorm ln({2, 3});
  randomize_affine(ln, 4);
  check_gradients(ln, random_tensor({3, 2, 3}, 5));
}

TEST(LayerNormTest, BackwardOfTwoDimensionalInputMatchesFiniteDifferences) {
  nn::LayerNorm ln({6});
  randomize_affine(ln, 6);
  check_gradients(ln, random_tensor({4, 6}, 7, 1.5f, 0.5f));
}

TEST(LayerNormTest, BackwardWithoutAffineMatchesFiniteDifferences) {
  nn::LayerNorm ln({5}, 1e-5, false);
  check_gradients(ln, random_tensor({3, 5}, 8));
}

}  // namespace
}  // namespace syncbn
