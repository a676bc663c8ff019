#include "syncbn/nn/group_norm.h"

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

// GroupNorm of x (N, C, S) NCHW in double, two-pass statistics per (n, g):
//   y = w_c (x - mean_ng) / sqrt(var_ng + eps) + b_c
std::vector<double> reference_group_norm(const std::vector<float>& x, int64_t batch,
                                         int64_t channels, int64_t spatial, int64_t groups,
                                         const std::vector<float>& w, const std::vector<float>& b,
                                         double eps = 1e-5) {
  const int64_t row = channels / groups * spatial;
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < batch * groups; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < row; ++i) mean += x[r * row + i];
    mean /= row;
    for (int64_t i = 0; i < row; ++i) var += (x[r * row + i] - mean) * (x[r * row + i] - mean);
    var /= row;
    for (int64_t i = 0; i < row; ++i) {
      const int64_t c = (r % groups) * (channels / groups) + i / spatial;
      y[r * row + i] = (w.empty() ? 1.0 : w[c]) * (x[r * row + i] - mean) / std::sqrt(var + eps) +
                       (b.empty() ? 0.0 : b[c]);
    }
  }
  return y;
}

void set_values(Tensor t, const std::vector<float>& values) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.data());
}

void randomize_affine(nn::GroupNorm& gn, uint64_t seed) {
  set_values(gn.weight()->value, random_tensor({gn.num_channels()}, seed, 0.5f, 1.0f).to_vector());
  set_values(gn.bias()->value, random_tensor({gn.num_channels()}, seed + 1, 0.5f).to_vector());
}

std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no syncbn::Error thrown)";
}

TEST(GroupNormTest, ParametersAndPrintoutMatchPyTorch) {
  nn::GroupNorm gn(2, 4);
  const auto params = gn.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_EQ(params[0].second->value.to_vector(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(params[1].second->value.to_vector(), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_TRUE(params[0].second->is_norm_or_bias);
  EXPECT_TRUE(gn.named_buffers().empty());
  EXPECT_EQ(gn.str(), "GroupNorm(2, 4, eps=1e-05, affine=True)");
  nn::GroupNorm plain(1, 3, 1e-3, false);
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_EQ(plain.str(), "GroupNorm(1, 3, eps=0.001, affine=False)");
}

TEST(GroupNormTest, RejectsChannelsNotDivisibleByGroupsAndWrongInputs) {
  EXPECT_NE(error_message([] { nn::GroupNorm(3, 4); }).find("divisible by num_groups"),
            std::string::npos);
  nn::GroupNorm gn(2, 4);
  EXPECT_NE(error_message([&] {
              gn.forward(Tensor::zeros({2, 6, 3}));
            }).find("expected input (N, 4"),
            std::string::npos);
  EXPECT_THROW(gn.forward(Tensor::zeros({4})), Error);
}

TEST(GroupNormTest, ForwardMatchesDoubleReference) {
  nn::GroupNorm gn(3, 6);
  randomize_affine(gn, 1);
  const Tensor x = random_tensor({2, 6, 2, 3}, 2, 2.0f, 1.0f);
  const Tensor y = gn.forward(x);
  EXPECT_EQ(y.shape(), x.shape());
  expect_close(y.to_vector(),
               reference_group_norm(x.to_vector(), 2, 6, 6, 3, gn.weight()->value.to_vector(),
                                    gn.bias()->value.to_vector()),
               1e-5, 1e-5, "y");
}

TEST(GroupNormTest, SameInTrainingAndEvaluation) {
  nn::GroupNorm gn(2, 4);
  randomize_affine(gn, 3);
  const Tensor x = random_tensor({3, 4, 5}, 4);
  const auto expected = reference_group_norm(
      x.to_vector(), 3, 4, 5, 2, gn.weight()->value.to_vector(), gn.bias()->value.to_vector());
  expect_close(gn.forward(x).to_vector(), expected, 1e-5, 1e-5, "train");
  gn.eval();
  expect_close(gn.forward(x).to_vector(), expected, 1e-5, 1e-5, "eval");
}

TEST(GroupNormTest, TwoDimensionalInputNormalisesGroupsOfChannels) {
  nn::GroupNorm gn(2, 6, 1e-5, false);
  const Tensor x = random_tensor({4, 6}, 5, 3.0f);
  expect_close(gn.forward(x).to_vector(), reference_group_norm(x.to_vector(), 4, 6, 1, 2, {}, {}),
               1e-5, 1e-5, "y");
}

// Mean 1e4, std 1: a one-pass float variance would lose every digit; only the float rounding of
// x - mean (ulp(1e4) ~ 1e-3) remains.
TEST(GroupNormTest, LargeMeanIsNormalisedAccurately) {
  nn::GroupNorm gn(2, 4, 1e-5, false);
  const Tensor x = random_tensor({2, 4, 8, 8}, 6, 1.0f, 1e4f);
  expect_close(gn.forward(x).to_vector(), reference_group_norm(x.to_vector(), 2, 4, 64, 2, {}, {}),
               0.0, 2e-3, "y");
}

// Gradients of GroupNorm in double: with g = w_c dy and per-row means over the D values,
//   dx = invstd (g - mean(g) - xhat mean(g xhat)), dweight_c = sum dy xhat, dbias_c = sum dy.
struct Grads {
  std::vector<double> dx, dweight, dbias;
};

Grads reference_group_norm_backward(const std::vector<float>& x, const std::vector<float>& dy,
                                    int64_t batch, int64_t channels, int64_t spatial,
                                    int64_t groups, const std::vector<float>& w,
                                    double eps = 1e-5) {
  const int64_t row = channels / groups * spatial;
  Grads out{std::vector<double>(x.size()), std::vector<double>(channels, 0.0),
            std::vector<double>(channels, 0.0)};
  for (int64_t r = 0; r < batch * groups; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < row; ++i) mean += x[r * row + i];
    mean /= row;
    for (int64_t i = 0; i < row; ++i) var += (x[r * row + i] - mean) * (x[r * row + i] - mean);
    var /= row;
    const double invstd = 1.0 / std::sqrt(var + eps);
    auto channel = [&](int64_t i) { return (r % groups) * (channels / groups) + i / spatial; };
    double mean_g = 0.0, mean_g_xhat = 0.0;
    for (int64_t i = 0; i < row; ++i) {
      const double xhat = (x[r * row + i] - mean) * invstd;
      const double g = w[channel(i)] * dy[r * row + i];
      mean_g += g / row;
      mean_g_xhat += g * xhat / row;
      out.dweight[channel(i)] += dy[r * row + i] * xhat;
      out.dbias[channel(i)] += dy[r * row + i];
    }
    for (int64_t i = 0; i < row; ++i) {
      const double xhat = (x[r * row + i] - mean) * invstd;
      out.dx[r * row + i] =
          invstd * (w[channel(i)] * dy[r * row + i] - mean_g - xhat * mean_g_xhat);
    }
  }
  return out;
}

// Above the kernels' threshold for OpenMP: the threaded paths.
TEST(GroupNormTest, LargeInputsUseThreadsAndMatchDoubleReference) {
  nn::GroupNorm gn(4, 32);
  randomize_affine(gn, 20);
  const Tensor x = random_tensor({4, 32, 16, 16}, 21, 2.0f, 1.0f);
  const Tensor dy = random_tensor({4, 32, 16, 16}, 22);
  const auto w = gn.weight()->value.to_vector();
  expect_close(gn.forward(x).to_vector(),
               reference_group_norm(x.to_vector(), 4, 32, 256, 4, w, gn.bias()->value.to_vector()),
               1e-4, 1e-4, "y");
  const Grads g = reference_group_norm_backward(x.to_vector(), dy.to_vector(), 4, 32, 256, 4, w);
  expect_close(gn.backward(dy).to_vector(), g.dx, 1e-3, 1e-4, "dx");
  expect_close(gn.weight()->grad.to_vector(), g.dweight, 1e-4, 1e-3, "dweight");
  expect_close(gn.bias()->grad.to_vector(), g.dbias, 1e-4, 1e-3, "dbias");
}

TEST(GroupNormTest, BackwardMatchesFiniteDifferences) {
  nn::GroupNorm gn(2, 4);
  randomize_affine(gn, 7);
  check_gradients(gn, random_tensor({2, 4, 2, 3}, 8));
}

TEST(GroupNormTest, BackwardWithoutAffineMatchesFiniteDifferences) {
  nn::GroupNorm gn(3, 6, 1e-5, false);
  check_gradients(gn, random_tensor({2, 6, 3}, 9, 2.0f, 1.0f));
}

TEST(GroupNormTest, ParameterGradientsAccumulate) {
  nn::GroupNorm gn(1, 2);
  const Tensor x = random_tensor({2, 2, 3}, 10);
  const Tensor dy = random_tensor({2, 2, 3}, 11);
  gn.forward(x);
  gn.backward(dy);
  const auto once = gn.bias()->grad.to_vector();
  gn.backward(dy);
  const auto twice = gn.bias()->grad.to_vector();
  // dbias = sum of dy over (n, s) per channel.
  const auto g = dy.to_vector();
  for (int c = 0; c < 2; ++c) {
    double sum = 0.0;
    for (int n = 0; n < 2; ++n)
      for (int s = 0; s < 3; ++s) sum += g[(n * 2 + c) * 3 + s];
    EXPECT_NEAR(once[c], sum, 1e-5);
    EXPECT_NEAR(twice[c], 2 * sum, 1e-5);
  }
}

}  // namespace
}  // namespace syncbn
