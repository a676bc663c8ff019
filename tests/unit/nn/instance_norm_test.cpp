#include "syncbn/nn/instance_norm.h"

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

constexpr double kEps = 1e-5;

// Per-(n, c) two-pass mean and biased variance of x (N, C, S), in double.
struct InstanceStats {
  std::vector<double> mean, var;  // (N * C)
};

InstanceStats reference_stats(const std::vector<float>& x, int64_t spatial) {
  const std::size_t planes = x.size() / spatial;
  InstanceStats st{std::vector<double>(planes, 0.0), std::vector<double>(planes, 0.0)};
  for (std::size_t p = 0; p < planes; ++p) {
    for (int64_t s = 0; s < spatial; ++s) st.mean[p] += x[p * spatial + s];
    st.mean[p] /= spatial;
    for (int64_t s = 0; s < spatial; ++s) {
      st.var[p] += (x[p * spatial + s] - st.mean[p]) * (x[p * spatial + s] - st.mean[p]);
    }
    st.var[p] /= spatial;
  }
  return st;
}

// y = w_c (x - mean) / sqrt(var + eps) + b_c with per-plane (n, c) mean and var.
std::vector<double> reference_normalize(const std::vector<float>& x, int64_t channels,
                                        int64_t spatial, const std::vector<double>& plane_mean,
                                        const std::vector<double>& plane_var,
                                        const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<double> y(x.size());
  for (std::size_t p = 0; p < x.size() / spatial; ++p) {
    const int64_t c = static_cast<int64_t>(p) % channels;
    for (int64_t s = 0; s < spatial; ++s) {
      y[p * spatial + s] = (w.empty() ? 1.0 : w[c]) * (x[p * spatial + s] - plane_mean[p]) /
                               std::sqrt(plane_var[p] + kEps) +
                           (b.empty() ? 0.0 : b[c]);
    }
  }
  return y;
}

void set_values(Tensor t, const std::vector<float>& values) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.data());
}

void randomize_affine(nn::InstanceNorm2d& norm, uint64_t seed) {
  const int64_t c = norm.num_features();
  set_values(norm.weight()->value, random_tensor({c}, seed, 0.5f, 1.0f).to_vector());
  set_values(norm.bias()->value, random_tensor({c}, seed + 1, 0.5f).to_vector());
}

TEST(InstanceNorm2dTest, DefaultsHaveNoStateAndPrintLikePyTorch) {
  nn::InstanceNorm2d plain(3);
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_TRUE(plain.named_buffers().empty());
  EXPECT_EQ(plain.str(),
            "InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
  nn::InstanceNorm2d full(3, 1e-5, 0.1, true, true);
  const auto state = full.state_dict();
  ASSERT_EQ(state.size(), 5u);
  const std::vector<std::string> names = {"weight", "bias", "running_mean", "running_var",
                                          "num_batches_tracked"};
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_EQ(state[i].first, names[i]);
  EXPECT_EQ(full.str(),
            "InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
}

TEST(InstanceNorm2dTest, ForwardMatchesDoubleReference) {
  nn::InstanceNorm2d norm(3, kEps, 0.1, /*affine=*/true);
  randomize_affine(norm, 1);
  const Tensor x = random_tensor({2, 3, 3, 3}, 2, 2.0f, 1.0f);
  const InstanceStats st = reference_stats(x.to_vector(), 9);
  expect_close(
      norm.forward(x).to_vector(),
      reference_normalize(x.to_vector(), 3, 9, st.mean, st.var, norm.weight()->value.to_vector(),
                          norm.bias()->value.to_vector()),
      1e-5, 1e-5, "y");
}

TEST(InstanceNorm2dTest, UnbatchedInputEqualsABatchOfOne) {
  nn::InstanceNorm2d norm(2, kEps, 0.1, true);
  randomize_affine(norm, 3);
  const Tensor x = random_tensor({2, 3, 4}, 4);
  const Tensor y = norm.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
  const Tensor y_batched = norm.forward(x.reshape({1, 2, 3, 4}));
  EXPECT_EQ(y.to_vector(), y_batched.to_vector());
  const Tensor dx = norm.backward(random_tensor({1, 2, 3, 4}, 5));
  EXPECT_EQ(dx.shape(), (Shape{1, 2, 3, 4}));
}

TEST(InstanceNorm2dTest, TrainingUpdatesRunningStatsLikePyTorch) {
  nn::InstanceNorm2d norm(2, kEps, 0.2, false, /*track_running_stats=*/true);
  const Tensor x = random_tensor({3, 2, 2, 2}, 6, 1.5f, 2.0f);
  norm.forward(x);
  // torch: batch_norm over a (1, N*C, H, W) view, then the mean over n of the per-(n, c)
  // running updates; the variance is unbiased over the H*W values of a plane.
  const InstanceStats st = reference_stats(x.to_vector(), 4);
  std::vector<double> running_mean(2, 0.0), running_var(2, 0.0);
  for (int c = 0; c < 2; ++c) {
    for (int n = 0; n < 3; ++n) {
      running_mean[c] += 0.2 * st.mean[n * 2 + c] / 3.0;
      running_var[c] += (0.8 + 0.2 * st.var[n * 2 + c] * 4.0 / 3.0) / 3.0;
    }
  }
  expect_close(norm.running_mean().to_vector(), running_mean, 1e-5, 1e-6, "running_mean");
  expect_close(norm.running_var().to_vector(), running_var, 1e-5, 1e-6, "running_var");
  // Like torch, InstanceNorm does not advance num_batches_tracked.
  EXPECT_EQ(norm.named_buffers()[2].second.to_vector(), std::vector<float>{0.0f});
}

TEST(InstanceNorm2dTest, EvalWithTrackedStatsUsesRunningStats) {
  nn::InstanceNorm2d norm(2, kEps, 0.1, true, true);
  randomize_affine(norm, 7);
  const std::vector<float> running_mean = {0.5f, -1.0f}, running_var = {2.0f, 0.5f};
  set_values(norm.running_mean(), running_mean);
  set_values(norm.running_var(), running_var);
  norm.eval();
  const Tensor x = random_tensor({2, 2, 2, 3}, 8);
  // Per plane, the channel's running statistics.
  std::vector<double> plane_mean(4), plane_var(4);
  for (int p = 0; p < 4; ++p) {
    plane_mean[p] = running_mean[p % 2];
    plane_var[p] = running_var[p % 2];
  }
  expect_close(
      norm.forward(x).to_vector(),
      reference_normalize(x.to_vector(), 2, 6, plane_mean, plane_var,
                          norm.weight()->value.to_vector(), norm.bias()->value.to_vector()),
      1e-5, 1e-5, "y");
  EXPECT_EQ(norm.running_mean().to_vector(), running_mean);
}

TEST(InstanceNorm2dTest, EvalWithoutTrackingUsesInstanceStats) {
  nn::InstanceNorm2d norm(2);
  norm.eval();
  const Tensor x = random_tensor({2, 2, 3, 3}, 9, 2.0f, -1.0f);
  const InstanceStats st = reference_stats(x.to_vector(), 9);
  expect_close(norm.forward(x).to_vector(),
               reference_normalize(x.to_vector(), 2, 9, st.mean, st.var, {}, {}), 1e-5, 1e-5, "y");
}

TEST(InstanceNorm2dTest, OneSpatialElementInTrainingThrows) {
  nn::InstanceNorm2d norm(3);
  try {
    norm.forward(Tensor::zeros({2, 3, 1, 1}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Expected more than 1 spatial element when training, got "
                                         "input size [2, 3, 1, 1]"),
              std::string::npos)
        << e.what();
  }
}

TEST(InstanceNorm2dTest, ChannelCountMattersOnlyWithPerChannelState) {
  nn::InstanceNorm2d plain(4);
  EXPECT_EQ(plain.forward(random_tensor({2, 3, 2, 2}, 10)).shape(), (Shape{2, 3, 2, 2}));
  nn::InstanceNorm2d affine(4, kEps, 0.1, true);
  EXPECT_THROW(affine.forward(random_tensor({2, 3, 2, 2}, 11)), Error);
  EXPECT_THROW(plain.forward(Tensor::zeros({3, 4})), Error);
}

TEST(InstanceNorm2dTest, TrainingBackwardMatchesFiniteDifferences) {
  nn::InstanceNorm2d norm(3, kEps, 0.1, true, true);
  randomize_affine(norm, 12);
  check_gradients(norm, random_tensor({2, 3, 2, 3}, 13));
}

TEST(InstanceNorm2dTest, EvalBackwardWithRunningStatsMatchesFiniteDifferences) {
  nn::InstanceNorm2d norm(2, kEps, 0.1, true, true);
  randomize_affine(norm, 14);
  set_values(norm.running_mean(), {0.2f, -0.3f});
  set_values(norm.running_var(), {1.5f, 0.7f});
  norm.eval();
  check_gradients(norm, random_tensor({2, 2, 2, 2}, 15));
}

TEST(InstanceNorm2dTest, BackwardWithoutAffineMatchesFiniteDifferences) {
  nn::InstanceNorm2d norm(2);
  check_gradients(norm, random_tensor({2, 2, 3, 2}, 16, 2.0f));
}

}  // namespace
}  // namespace syncbn
