#include "syncbn/nn/batch_norm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::expect_close;
using testing::random_tensor;
using testing::random_values;

constexpr double kEps = 1e-5;

// ---- Independent double-precision reference, x as (N, C, S) NCHW ----------------------------

struct Dims {
  int64_t n, c, s;
  std::size_t at(int64_t n_i, int64_t c_i, int64_t s_i) const {
    return static_cast<std::size_t>((n_i * c + c_i) * s + s_i);
  }
};

// Two-pass mean and biased variance per channel.
struct ChannelStats {
  std::vector<double> mean, var;
};

ChannelStats reference_stats(const std::vector<float>& x, Dims d) {
  ChannelStats st{std::vector<double>(d.c, 0.0), std::vector<double>(d.c, 0.0)};
  const double count = static_cast<double>(d.n * d.s);
  for (int64_t c = 0; c < d.c; ++c) {
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t s = 0; s < d.s; ++s) st.mean[c] += x[d.at(n, c, s)];
    st.mean[c] /= count;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t s = 0; s < d.s; ++s) {
        const double dev = x[d.at(n, c, s)] - st.mean[c];
        st.var[c] += dev * dev;
      }
    st.var[c] /= count;
  }
  return st;
}

// y = w (x - mean) / sqrt(var + eps) + b; empty w/b mean 1/0.
std::vector<double> reference_normalize(const std::vector<float>& x, Dims d,
                                        const std::vector<double>& mean,
                                        const std::vector<double>& var,
                                        const std::vector<float>& w = {},
                                        const std::vector<float>& b = {}) {
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t s = 0; s < d.s; ++s) {
        const double xhat = (x[d.at(n, c, s)] - mean[c]) / std::sqrt(var[c] + kEps);
        y[d.at(n, c, s)] = (w.empty() ? 1.0 : w[c]) * xhat + (b.empty() ? 0.0 : b[c]);
      }
  return y;
}

struct Grads {
  std::vector<double> dx, dweight, dbias;
};

// Training-mode gradients, statistics depending on x:
//   dx = w invstd (dy - mean(dy) - xhat mean(dy xhat)), dweight = sum dy xhat, dbias = sum dy.
Grads reference_training_backward(const std::vector<float>& x, const std::vector<float>& dy, Dims d,
                                  const std::vector<float>& w) {
  const ChannelStats st = reference_stats(x, d);
  const double count = static_cast<double>(d.n * d.s);
  Grads g{std::vector<double>(x.size()), std::vector<double>(d.c, 0.0),
          std::vector<double>(d.c, 0.0)};
  for (int64_t c = 0; c < d.c; ++c) {
    const double invstd = 1.0 / std::sqrt(st.var[c] + kEps);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t s = 0; s < d.s; ++s) {
        sum_dy += dy[d.at(n, c, s)];
        sum_dy_xhat += dy[d.at(n, c, s)] * (x[d.at(n, c, s)] - st.mean[c]) * invstd;
      }
    g.dweight[c] = sum_dy_xhat;
    g.dbias[c] = sum_dy;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t s = 0; s < d.s; ++s) {
        const double xhat = (x[d.at(n, c, s)] - st.mean[c]) * invstd;
        g.dx[d.at(n, c, s)] =
            w[c] * invstd * (dy[d.at(n, c, s)] - sum_dy / count - xhat * sum_dy_xhat / count);
      }
  }
  return g;
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

void set_values(Tensor t, const std::vector<float>& values) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(values.size()));
  std::copy(values.begin(), values.end(), t.data());
}

// (N, C, S) -> (N, S, C)
std::vector<float> to_channels_last(const std::vector<float>& x, Dims d) {
  std::vector<float> out(x.size());
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t s = 0; s < d.s; ++s) out[(n * d.s + s) * d.c + c] = x[d.at(n, c, s)];
  return out;
}

std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no syncbn::Error thrown)";
}

// A BatchNorm2d with weight, bias set to distinct values.
std::unique_ptr<nn::BatchNorm2d> make_bn2d(const nn::BatchNormOptions& options, uint64_t seed) {
  auto bn = std::make_unique<nn::BatchNorm2d>(options);
  if (options.affine()) {
    set_values(bn->weight()->value, random_values(options.num_features(), seed, 0.5f, 1.0f));
    set_values(bn->bias()->value, random_values(options.num_features(), seed + 1, 0.5f));
  }
  return bn;
}

// ---- Structure ---------------------------------------------------------------------------------

TEST(BatchNormTest, OptionsDefaultsMatchPyTorchAndSettersChain) {
  nn::BatchNormOptions defaults(8);
  EXPECT_EQ(defaults.num_features(), 8);
  EXPECT_EQ(defaults.eps(), 1e-5);
  EXPECT_EQ(defaults.momentum(), 0.1);
  EXPECT_TRUE(defaults.affine());
  EXPECT_TRUE(defaults.track_running_stats());
  const auto chained = nn::BatchNormOptions(3)
                           .eps(1e-3)
                           .momentum(std::nullopt)
                           .affine(false)
                           .track_running_stats(false);
  EXPECT_EQ(chained.eps(), 1e-3);
  EXPECT_FALSE(chained.momentum().has_value());
  EXPECT_FALSE(chained.affine());
  EXPECT_FALSE(chained.track_running_stats());
}

TEST(BatchNormTest, StateDictNamesAndInitialValuesMatchPyTorch) {
  nn::BatchNorm2d bn(3);
  const auto state = bn.state_dict();
  ASSERT_EQ(state.size(), 5u);
  const std::vector<std::string> names = {"weight", "bias", "running_mean", "running_var",
                                          "num_batches_tracked"};
  const std::vector<std::vector<float>> values = {{1, 1, 1}, {0, 0, 0}, {0, 0, 0}, {1, 1, 1}, {0}};
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(state[i].first, names[i]);
    EXPECT_EQ(state[i].second.to_vector(), values[i]) << names[i];
  }
  for (const auto& [name, param] : bn.named_parameters()) {
    EXPECT_TRUE(param->is_norm_or_bias) << name;
    EXPECT_EQ(param->grad.to_vector(), (std::vector<float>{0, 0, 0})) << name;
  }
}

TEST(BatchNormTest, AffineOffAndUntrackedRegisterNothing) {
  nn::BatchNorm2d plain(nn::BatchNormOptions(3).affine(false).track_running_stats(false));
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_TRUE(plain.named_buffers().empty());
  EXPECT_EQ(plain.weight(), nullptr);
  EXPECT_FALSE(plain.running_mean().defined());
}

TEST(BatchNormTest, PrintsLikePyTorchRepr) {
  EXPECT_EQ(nn::BatchNorm2d(4).str(),
            "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(nn::BatchNorm1d(nn::BatchNormOptions(3).momentum(std::nullopt).affine(false)).str(),
            "BatchNorm1d(3, eps=1e-05, momentum=None, affine=False, track_running_stats=True)");
}

TEST(BatchNormTest, PythonFloatReprMatchesPython) {
  // Values and strings from Python's repr().
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.001), "0.001");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(123.5), "123.5");
  EXPECT_EQ(python_float_repr(-2.5e-7), "-2.5e-07");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
}

TEST(BatchNormTest, RejectsWrongDimensionsAndChannelCounts) {
  nn::BatchNorm2d bn2d(3);
  EXPECT_NE(error_message([&] {
              bn2d.forward(Tensor::zeros({2, 3, 4}));
            }).find("expected 4D input"),
            std::string::npos);
  EXPECT_NE(error_message([&] {
              bn2d.forward(Tensor::zeros({2, 4, 2, 2}));
            })
                .find("expected 3 "
                      "channels"),
            std::string::npos);
  nn::BatchNorm1d bn1d(3);
  EXPECT_NE(error_message([&] {
              bn1d.forward(Tensor::zeros({2, 3, 2, 2}));
            }).find("expected 2D or 3D input"),
            std::string::npos);
}

// ---- Numbers against the double reference -----------------------------------------------------

TEST(BatchNormTest, TrainingForwardAndRunningStatsMatchDoubleReference) {
  const Dims d{4, 3, 6};
  auto bn = make_bn2d(nn::BatchNormOptions(3), 7);
  const Tensor x = random_tensor({4, 3, 2, 3}, 1, 2.0f, 0.5f);
  const Tensor y = bn->forward(x);

  const auto xv = x.to_vector();
  const ChannelStats st = reference_stats(xv, d);
  expect_close(y.to_vector(),
               reference_normalize(xv, d, st.mean, st.var, bn->weight()->value.to_vector(),
                                   bn->bias()->value.to_vector()),
               1e-5, 1e-5, "y");
  std::vector<double> running_mean(3), running_var(3);
  const double n = 24.0;
  for (int c = 0; c < 3; ++c) {
    running_mean[c] = 0.1 * st.mean[c];
    running_var[c] = 0.9 + 0.1 * st.var[c] * n / (n - 1.0);
  }
  expect_close(bn->running_mean().to_vector(), running_mean, 1e-6, 1e-7, "running_mean");
  expect_close(bn->running_var().to_vector(), running_var, 1e-6, 1e-7, "running_var");
  EXPECT_EQ(bn->num_batches_tracked().to_vector(), std::vector<float>{1.0f});
}

TEST(BatchNormTest, TrainingBackwardMatchesDoubleReference) {
  const Dims d{3, 4, 5};
  nn::BatchNorm1d bn(4);
  set_values(bn.weight()->value, {0.5f, -1.5f, 2.0f, 1.0f});
  const Tensor x = random_tensor({3, 4, 5}, 2, 1.5f, -0.5f);
  const Tensor dy = random_tensor({3, 4, 5}, 3);
  bn.forward(x);
  const Tensor dx = bn.backward(dy);
  const Grads g =
      reference_training_backward(x.to_vector(), dy.to_vector(), d, bn.weight()->value.to_vector());
  expect_close(dx.to_vector(), g.dx, 1e-4, 1e-5, "dx");
  expect_close(bn.weight()->grad.to_vector(), g.dweight, 1e-5, 1e-5, "dweight");
  expect_close(bn.bias()->grad.to_vector(), g.dbias, 1e-5, 1e-5, "dbias");
}

TEST(BatchNormTest, ParameterGradientsAccumulateAcrossBackwardCalls) {
  const Dims d{3, 2, 4};
  nn::BatchNorm2d bn(2);
  const Tensor x = random_tensor({3, 2, 2, 2}, 4);
  const Tensor dy = random_tensor({3, 2, 2, 2}, 5);
  bn.forward(x);
  bn.backward(dy);
  bn.backward(dy);
  const Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d, {1.0f, 1.0f});
  std::vector<double> twice_dweight = g.dweight, twice_dbias = g.dbias;
  for (auto& v : twice_dweight) v *= 2;
  for (auto& v : twice_dbias) v *= 2;
  expect_close(bn.weight()->grad.to_vector(), twice_dweight, 1e-5, 1e-5, "dweight");
  expect_close(bn.bias()->grad.to_vector(), twice_dbias, 1e-5, 1e-5, "dbias");
}

TEST(BatchNormTest, EvalUsesRunningStatisticsAndLeavesThemUnchanged) {
  const Dims d{2, 3, 4};
  auto bn = make_bn2d(nn::BatchNormOptions(3), 11);
  const std::vector<float> running_mean = {0.5f, -1.0f, 2.0f};
  const std::vector<float> running_var = {0.25f, 4.0f, 1.5f};
  set_values(bn->running_mean(), running_mean);
  set_values(bn->running_var(), running_var);
  bn->eval();
  const Tensor x = random_tensor({2, 3, 2, 2}, 12);
  const Tensor dy = random_tensor({2, 3, 2, 2}, 13);
  const Tensor y = bn->forward(x);
  const Tensor dx = bn->backward(dy);

  const auto xv = x.to_vector();
  const auto dyv = dy.to_vector();
  const auto w = bn->weight()->value.to_vector();
  expect_close(y.to_vector(),
               reference_normalize(xv, d, as_double(running_mean), as_double(running_var), w,
                                   bn->bias()->value.to_vector()),
               1e-5, 1e-5, "y");
  // Constant statistics: dx = w invstd dy, dweight = sum dy xhat, dbias = sum dy.
  std::vector<double> dx_ref(xv.size()), dweight(3, 0.0), dbias(3, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t s = 0; s < d.s; ++s) {
        const double invstd = 1.0 / std::sqrt(running_var[c] + kEps);
        const std::size_t i = d.at(n, c, s);
        dx_ref[i] = w[c] * invstd * dyv[i];
        dweight[c] += dyv[i] * (xv[i] - running_mean[c]) * invstd;
        dbias[c] += dyv[i];
      }
  expect_close(dx.to_vector(), dx_ref, 1e-5, 1e-6, "dx");
  expect_close(bn->weight()->grad.to_vector(), dweight, 1e-5, 1e-5, "dweight");
  expect_close(bn->bias()->grad.to_vector(), dbias, 1e-5, 1e-5, "dbias");
  EXPECT_EQ(bn->running_mean().to_vector(), running_mean);
  EXPECT_EQ(bn->running_var().to_vector(), running_var);
  EXPECT_EQ(bn->num_batches_tracked().to_vector(), std::vector<float>{0.0f});
}

TEST(BatchNormTest, MomentumNoneIsCumulativeAverageOverBatches) {
  const Dims d{3, 2, 4};
  nn::BatchNorm2d bn(nn::BatchNormOptions(2).momentum(std::nullopt));
  std::vector<double> mean_sum(2, 0.0), var_sum(2, 0.0);
  const int batches = 3;
  for (int b = 0; b < batches; ++b) {
    const Tensor x = random_tensor({3, 2, 2, 2}, 20 + b, 1.0f + b, static_cast<float>(b));
    bn.forward(x);
    const ChannelStats st = reference_stats(x.to_vector(), d);
    for (int c = 0; c < 2; ++c) {
      mean_sum[c] += st.mean[c];
      var_sum[c] += st.var[c] * 12.0 / 11.0;
    }
  }
  for (int c = 0; c < 2; ++c) {
    mean_sum[c] /= batches;
    var_sum[c] /= batches;
  }
  expect_close(bn.running_mean().to_vector(), mean_sum, 1e-5, 1e-6, "running_mean");
  expect_close(bn.running_var().to_vector(), var_sum, 1e-5, 1e-6, "running_var");
  EXPECT_EQ(bn.num_batches_tracked().to_vector(), std::vector<float>{3.0f});
}

TEST(BatchNormTest, AffineOffOutputIsXhat) {
  const Dims d{4, 2, 3};
  nn::BatchNorm1d bn(nn::BatchNormOptions(2).affine(false));
  const Tensor x = random_tensor({4, 2, 3}, 30, 3.0f, 1.0f);
  const Tensor y = bn.forward(x);
  const ChannelStats st = reference_stats(x.to_vector(), d);
  expect_close(y.to_vector(), reference_normalize(x.to_vector(), d, st.mean, st.var), 1e-5, 1e-5,
               "y");
  const Tensor dy = random_tensor({4, 2, 3}, 31);
  const Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d, {1.0f, 1.0f});
  expect_close(bn.backward(dy).to_vector(), g.dx, 1e-4, 1e-5, "dx");
}

TEST(BatchNormTest, UntrackedUsesBatchStatisticsInEvalToo) {
  const Dims d{4, 3, 4};
  auto bn = make_bn2d(nn::BatchNormOptions(3).track_running_stats(false), 40);
  bn->eval();
  const Tensor x = random_tensor({4, 3, 2, 2}, 41, 2.0f, 3.0f);
  const Tensor dy = random_tensor({4, 3, 2, 2}, 42);
  const auto w = bn->weight()->value.to_vector();
  const ChannelStats st = reference_stats(x.to_vector(), d);
  expect_close(
      bn->forward(x).to_vector(),
      reference_normalize(x.to_vector(), d, st.mean, st.var, w, bn->bias()->value.to_vector()),
      1e-5, 1e-5, "y");
  // The statistics depend on x, so the full training formula applies.
  const Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d, w);
  expect_close(bn->backward(dy).to_vector(), g.dx, 1e-4, 1e-5, "dx");
}

TEST(BatchNormTest, BatchNorm1dTwoDimensionalInputNormalisesOverTheBatch) {
  const Dims d{5, 3, 1};
  nn::BatchNorm1d bn(3);
  set_values(bn.weight()->value, {2.0f, 0.5f, -1.0f});
  set_values(bn.bias()->value, {0.1f, 0.2f, 0.3f});
  const Tensor x = random_tensor({5, 3}, 50, 1.5f, 2.0f);
  const Tensor dy = random_tensor({5, 3}, 51);
  const ChannelStats st = reference_stats(x.to_vector(), d);
  const auto w = bn.weight()->value.to_vector();
  expect_close(
      bn.forward(x).to_vector(),
      reference_normalize(x.to_vector(), d, st.mean, st.var, w, bn.bias()->value.to_vector()), 1e-5,
      1e-5, "y");
  const Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d, w);
  expect_close(bn.backward(dy).to_vector(), g.dx, 1e-4, 1e-5, "dx");
  expect_close(bn.weight()->grad.to_vector(), g.dweight, 1e-5, 1e-5, "dweight");
}

TEST(BatchNormTest, ChannelsLastGivesTheSameNumbersAsNchw) {
  // 20 channels and 2 * 36 rows cross the kernels' channel blocks and row chunks.
  const Dims d{2, 20, 36};
  auto nchw = make_bn2d(nn::BatchNormOptions(20), 60);
  auto nhwc = make_bn2d(nn::BatchNormOptions(20), 60);
  const Tensor x = random_tensor({2, 20, 6, 6}, 61, 1.0f, 0.5f);
  const Tensor dy = random_tensor({2, 20, 6, 6}, 62);
  Tensor x_last = Tensor::from_vector(x.shape(), to_channels_last(x.to_vector(), d));
  Tensor dy_last = Tensor::from_vector(x.shape(), to_channels_last(dy.to_vector(), d));
  x_last.set_memory_format(MemoryFormat::kChannelsLast);
  dy_last.set_memory_format(MemoryFormat::kChannelsLast);

  const Tensor y = nchw->forward(x);
  const Tensor y_last = nhwc->forward(x_last);
  EXPECT_EQ(y_last.memory_format(), MemoryFormat::kChannelsLast);
  expect_close(y_last.to_vector(), as_double(to_channels_last(y.to_vector(), d)), 1e-6, 1e-6, "y");
  const Tensor dx = nchw->backward(dy);
  const Tensor dx_last = nhwc->backward(dy_last);
  EXPECT_EQ(dx_last.memory_format(), MemoryFormat::kChannelsLast);
  expect_close(dx_last.to_vector(), as_double(to_channels_last(dx.to_vector(), d)), 1e-5, 1e-6,
               "dx");
  expect_close(nhwc->weight()->grad.to_vector(), as_double(nchw->weight()->grad.to_vector()), 1e-5,
               1e-6, "dweight");
  expect_close(nhwc->bias()->grad.to_vector(), as_double(nchw->bias()->grad.to_vector()), 1e-5,
               1e-6, "dbias");
  expect_close(nhwc->running_mean().to_vector(), as_double(nchw->running_mean().to_vector()), 1e-6,
               1e-7, "running_mean");
  expect_close(nhwc->running_var().to_vector(), as_double(nchw->running_var().to_vector()), 1e-6,
               1e-7, "running_var");

  // And against the reference directly, so that both layouts cannot be wrong together.
  const ChannelStats st = reference_stats(x.to_vector(), d);
  expect_close(
      y.to_vector(),
      reference_normalize(x.to_vector(), d, st.mean, st.var, nchw->weight()->value.to_vector(),
                          nchw->bias()->value.to_vector()),
      1e-5, 1e-5, "y reference");
}

// Above the kernels' threshold for OpenMP: the threaded paths, both layouts.
TEST(BatchNormTest, LargeInputsUseThreadsAndMatchDoubleReferenceInBothLayouts) {
  const Dims d{8, 20, 256};
  const Tensor x = random_tensor({8, 20, 16, 16}, 63, 2.0f, 1.0f);
  const Tensor dy = random_tensor({8, 20, 16, 16}, 64);
  for (bool channels_last : {false, true}) {
    auto bn = make_bn2d(nn::BatchNormOptions(20), 65);
    Tensor input = x, grad = dy;
    if (channels_last) {
      input = Tensor::from_vector(x.shape(), to_channels_last(x.to_vector(), d));
      grad = Tensor::from_vector(x.shape(), to_channels_last(dy.to_vector(), d));
      input.set_memory_format(MemoryFormat::kChannelsLast);
      grad.set_memory_format(MemoryFormat::kChannelsLast);
    }
    const auto w = bn->weight()->value.to_vector();
    const ChannelStats st = reference_stats(x.to_vector(), d);
    std::vector<double> y_ref =
        reference_normalize(x.to_vector(), d, st.mean, st.var, w, bn->bias()->value.to_vector());
    Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d, w);
    if (channels_last) {
      // Reorder the references as (N, S, C).
      std::vector<float> y_f(y_ref.begin(), y_ref.end()), dx_f(g.dx.begin(), g.dx.end());
      y_ref = as_double(to_channels_last(y_f, d));
      g.dx = as_double(to_channels_last(dx_f, d));
    }
    const std::string layout = channels_last ? "channels-last " : "NCHW ";
    expect_close(bn->forward(input).to_vector(), y_ref, 1e-4, 1e-4, layout + "y");
    expect_close(bn->backward(grad).to_vector(), g.dx, 1e-3, 1e-4, layout + "dx");
    expect_close(bn->weight()->grad.to_vector(), g.dweight, 1e-4, 1e-3, layout + "dweight");
    expect_close(bn->bias()->grad.to_vector(), g.dbias, 1e-4, 1e-3, layout + "dbias");
  }
}

// ---- Precision ---------------------------------------------------------------------------------

// Mean 1e4, std 1: plain float sums of x and x^2 would lose every digit of the variance.
TEST(BatchNormTest, LargeMeanVarianceIsAccurateOnFirstAndLaterBatches) {
  const Dims d{8, 2, 64};
  // momentum 1: running_var is exactly the unbiased batch variance.
  nn::BatchNorm1d bn(nn::BatchNormOptions(2).momentum(1.0));
  for (int batch = 0; batch < 2; ++batch) {
    // Batch 0 runs with shift 0 (running_mean starts at 0), batch 1 with shift ~1e4.
    const Tensor x = random_tensor({8, 2, 64}, 70 + batch, 1.0f, 1e4f);
    const Tensor y = bn.forward(x);
    const ChannelStats st = reference_stats(x.to_vector(), d);
    const double n = 512.0;
    for (int c = 0; c < 2; ++c) {
      const double unbiased = st.var[c] * n / (n - 1.0);
      EXPECT_NEAR(bn.running_var().to_vector()[c], unbiased, 1e-4 * unbiased)
          << "batch " << batch << " channel " << c;
      EXPECT_NEAR(bn.running_mean().to_vector()[c], st.mean[c], 1e-6 * st.mean[c]);
    }
    // xhat itself is limited by float x - mean (ulp(1e4) ~ 1e-3).
    expect_close(y.to_vector(), reference_normalize(x.to_vector(), d, st.mean, st.var), 0.0, 2e-3,
                 "y");
  }
}

// ---- Degenerate batches
// --------------------------------------------------------------------------

TEST(BatchNormTest, TrainingWithOneValuePerChannelThrowsPyTorchsError) {
  nn::BatchNorm1d bn(4);
  const std::string message = error_message([&] { bn.forward(random_tensor({1, 4}, 80)); });
  EXPECT_NE(message.find("Expected more than 1 value per channel when training, got input size "
                         "[1, 4]"),
            std::string::npos)
      << message;
  // The failed step left the running statistics alone.
  EXPECT_EQ(bn.running_mean().to_vector(), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(bn.num_batches_tracked().to_vector(), std::vector<float>{0.0f});
  // One sample with several values per channel is fine.
  EXPECT_NO_THROW(bn.forward(random_tensor({1, 4, 2}, 81)));
}

TEST(BatchNormTest, EvalWithOneSampleUsesRunningStatistics) {
  nn::BatchNorm1d bn(nn::BatchNormOptions(4).affine(false));
  set_values(bn.running_mean(), {1, 2, 3, 4});
  set_values(bn.running_var(), {1, 4, 9, 16});
  bn.eval();
  const Tensor y = bn.forward(Tensor::from_vector({1, 4}, {2, 4, 6, 8}));
  std::vector<double> expected(4);
  for (int c = 0; c < 4; ++c) expected[c] = (c + 1) / std::sqrt((c + 1.0) * (c + 1.0) + kEps);
  expect_close(y.to_vector(), expected, 1e-6, 1e-7, "y");
}

TEST(BatchNormTest, EmptyBatchInEvalGivesEmptyOutputs) {
  nn::BatchNorm2d bn(3);
  bn.eval();
  const Tensor y = bn.forward(Tensor::zeros({0, 3, 2, 2}));
  EXPECT_EQ(y.shape(), (Shape{0, 3, 2, 2}));
  const Tensor dx = bn.backward(Tensor::zeros({0, 3, 2, 2}));
  EXPECT_EQ(dx.shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(bn.weight()->grad.to_vector(), (std::vector<float>{0, 0, 0}));
}

TEST(BatchNormTest, TrainingOnAnEmptyBatchWithNoOtherRanksThrows) {
  nn::BatchNorm2d bn(3);
  const std::string message = error_message([&] { bn.forward(Tensor::zeros({0, 3, 2, 2})); });
  EXPECT_NE(message.find("Expected more than 1 value per channel when training, got input size "
                         "[0, 3, 2, 2]"),
            std::string::npos)
      << message;
}

// ---- Collective hooks
// ------------------------------------------------------------------------------

// What an allreduce over two ranks holding identical data returns: every packed value doubled.
class TwoIdenticalRanksBatchNorm2d : public nn::BatchNorm2d {
 public:
  using nn::BatchNorm2d::BatchNorm2d;
  std::vector<std::vector<double>> forward_packed_seen, backward_packed_seen;

 protected:
  bool reduce_forward_stats(ForwardStats stats) override {
    forward_packed_seen.emplace_back(stats.data, stats.data + stats.size());
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] *= 2.0;
    return true;
  }
  void reduce_backward_stats(BackwardStats stats) override {
    backward_packed_seen.emplace_back(stats.data, stats.data + stats.size());
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] *= 2.0;
  }
};

TEST(BatchNormTest, HooksSeeLocalShiftedSumsAroundTheRunningMean) {
  const Dims d{3, 2, 4};
  TwoIdenticalRanksBatchNorm2d bn(2);
  const std::vector<float> shift = {0.75f, -2.0f};
  set_values(bn.running_mean(), shift);
  const Tensor x = random_tensor({3, 2, 2, 2}, 90, 1.0f, 1.0f);
  bn.forward(x);
  ASSERT_EQ(bn.forward_packed_seen.size(), 1u);
  const auto xv = x.to_vector();
  std::vector<double> expected(5, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t s = 0; s < d.s; ++s) {
        const double dev = static_cast<double>(xv[d.at(n, c, s)]) - shift[c];
        expected[c] += dev;
        expected[2 + c] += dev * dev;
      }
  expected[4] = 12.0;  // n_r
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(bn.forward_packed_seen[0][i], expected[i], 1e-9) << i;
}

TEST(BatchNormTest, HookDoublingTheSumsActsLikeTwoIdenticalRanks) {
  const Dims d{3, 2, 4};
  TwoIdenticalRanksBatchNorm2d synced(2);
  nn::BatchNorm2d local(2);
  for (auto* bn : std::initializer_list<nn::BatchNorm*>{&synced, &local}) {
    set_values(bn->weight()->value, {1.5f, -0.5f});
    set_values(bn->bias()->value, {0.25f, 1.0f});
  }
  const Tensor x = random_tensor({3, 2, 2, 2}, 91, 2.0f, 1.0f);
  const Tensor dy = random_tensor({3, 2, 2, 2}, 92);

  // The same statistics, hence the same output.
  expect_close(synced.forward(x).to_vector(), as_double(local.forward(x).to_vector()), 1e-6, 1e-6,
               "y");
  // The unbiased correction uses the total n = 2 * 12.
  const ChannelStats st = reference_stats(x.to_vector(), d);
  const double n = 24.0;
  std::vector<double> running_var(2);
  for (int c = 0; c < 2; ++c) running_var[c] = 0.9 + 0.1 * st.var[c] * n / (n - 1.0);
  expect_close(synced.running_var().to_vector(), running_var, 1e-6, 1e-7, "running_var");

  // Backward: doubled sums over a doubled n leave dx as on one rank; parameter gradients are the
  // local sums.
  const Tensor dx = synced.backward(dy);
  ASSERT_EQ(synced.backward_packed_seen.size(), 1u);
  const Grads g = reference_training_backward(x.to_vector(), dy.to_vector(), d,
                                              synced.weight()->value.to_vector());
  expect_close(dx.to_vector(), g.dx, 1e-4, 1e-5, "dx");
  expect_close(synced.weight()->grad.to_vector(), g.dweight, 1e-5, 1e-5, "dweight");
  expect_close(synced.bias()->grad.to_vector(), g.dbias, 1e-5, 1e-5, "dbias");
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(synced.backward_packed_seen[0][c], g.dbias[c], 1e-5);
    EXPECT_NEAR(synced.backward_packed_seen[0][2 + c], g.dweight[c], 1e-5);
  }
}

TEST(BatchNormTest, HooksAreNotCalledInEvalWithRunningStatistics) {
  TwoIdenticalRanksBatchNorm2d bn(2);
  bn.eval();
  bn.forward(random_tensor({2, 2, 2, 2}, 93));
  bn.backward(random_tensor({2, 2, 2, 2}, 94));
  EXPECT_TRUE(bn.forward_packed_seen.empty());
  EXPECT_TRUE(bn.backward_packed_seen.empty());
}

// A rank with an empty local batch; the "other rank" contributes the sums of `other_x`.
class EmptyRankBatchNorm2d : public nn::BatchNorm2d {
 public:
  EmptyRankBatchNorm2d(int64_t channels, std::vector<double> other_forward)
      : nn::BatchNorm2d(channels), other_forward_(std::move(other_forward)) {}
  std::vector<std::vector<double>> forward_packed_seen, backward_packed_seen;

 protected:
  bool reduce_forward_stats(ForwardStats stats) override {
    forward_packed_seen.emplace_back(stats.data, stats.data + stats.size());
    for (int64_t i = 0; i < stats.size(); ++i) stats.data[i] += other_forward_[i];
    return true;
  }
  void reduce_backward_stats(BackwardStats stats) override {
    backward_packed_seen.emplace_back(stats.data, stats.data + stats.size());
  }

 private:
  std::vector<double> other_forward_;
};

TEST(BatchNormTest, EmptyLocalBatchJoinsTheCollectivesWithZerosAndGivesEmptyOutputs) {
  const Dims d{2, 2, 3};
  const Tensor other_x = random_tensor({2, 2, 3}, 95, 1.0f, 2.0f);
  const auto xv = other_x.to_vector();
  // The other rank's packed sums around the shared shift K = running_mean = 0.
  std::vector<double> other(5, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t c = 0; c < d.c; ++c)
      for (int64_t s = 0; s < d.s; ++s) {
        other[c] += xv[d.at(n, c, s)];
        other[2 + c] += static_cast<double>(xv[d.at(n, c, s)]) * xv[d.at(n, c, s)];
      }
  other[4] = 6.0;
  EmptyRankBatchNorm2d bn(2, other);
  const Tensor y = bn.forward(Tensor::zeros({0, 2, 3, 1}));
  EXPECT_EQ(y.shape(), (Shape{0, 2, 3, 1}));
  ASSERT_EQ(bn.forward_packed_seen.size(), 1u);
  EXPECT_EQ(bn.forward_packed_seen[0], std::vector<double>(5, 0.0));
  // The running statistics follow the group's batch.
  const ChannelStats st = reference_stats(xv, d);
  std::vector<double> running_mean(2), running_var(2);
  for (int c = 0; c < 2; ++c) {
    running_mean[c] = 0.1 * st.mean[c];
    running_var[c] = 0.9 + 0.1 * st.var[c] * 6.0 / 5.0;
  }
  expect_close(bn.running_mean().to_vector(), running_mean, 1e-6, 1e-7, "running_mean");
  expect_close(bn.running_var().to_vector(), running_var, 1e-6, 1e-7, "running_var");

  const Tensor dx = bn.backward(Tensor::zeros({0, 2, 3, 1}));
  EXPECT_EQ(dx.shape(), (Shape{0, 2, 3, 1}));
  ASSERT_EQ(bn.backward_packed_seen.size(), 1u);
  EXPECT_EQ(bn.backward_packed_seen[0], std::vector<double>(4, 0.0));
  EXPECT_EQ(bn.weight()->grad.to_vector(), (std::vector<float>{0, 0}));
}

TEST(BatchNormTest, GroupTotalOfOneValueIsAnErrorNamingTheGroup) {
  // This rank is empty and the other holds one value per channel.
  EmptyRankBatchNorm2d bn(2, {0.5, 0.5, 0.25, 0.25, 1.0});
  const std::string message = error_message([&] { bn.forward(Tensor::zeros({0, 2, 1, 1})); });
  EXPECT_NE(message.find("Expected more than 1 value per channel when training"), std::string::npos)
      << message;
  EXPECT_NE(message.find("in total over the synchronised group"), std::string::npos) << message;
  EXPECT_NE(message.find("[0, 2, 1, 1]"), std::string::npos) << message;
}

// ---- Sharing state with a derived batch norm (convert_sync_batchnorm)
// -------------------------------

class SharingBatchNorm : public nn::BatchNorm {
 public:
  explicit SharingBatchNorm(const nn::BatchNorm& source) : nn::BatchNorm(source, ShareState{}) {}
  std::string type_name() const override { return "SharingBatchNorm"; }
};

TEST(BatchNormTest, DerivedBatchNormSharesParametersAndBuffersOfItsSource) {
  nn::BatchNorm2d source(nn::BatchNormOptions(3).eps(1e-3).momentum(0.3));
  source.eval();
  SharingBatchNorm shared(source);
  EXPECT_EQ(shared.options().eps(), 1e-3);
  EXPECT_EQ(shared.options().momentum(), 0.3);
  EXPECT_FALSE(shared.is_training());
  const auto source_params = source.named_parameters();
  const auto shared_params = shared.named_parameters();
  ASSERT_EQ(shared_params.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(shared_params[i].first, source_params[i].first);
    EXPECT_EQ(shared_params[i].second.get(), source_params[i].second.get());
  }
  const auto source_buffers = source.named_buffers();
  const auto shared_buffers = shared.named_buffers();
  ASSERT_EQ(shared_buffers.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(shared_buffers[i].first, source_buffers[i].first);
    EXPECT_EQ(shared_buffers[i].second.data(), source_buffers[i].second.data());
  }
  // A training step of the derived module moves the source's running statistics.
  shared.train();
  shared.forward(random_tensor({2, 3, 2, 2}, 96, 1.0f, 5.0f));
  for (float v : source.running_mean().to_vector()) EXPECT_GT(v, 0.2f);
  EXPECT_EQ(source.num_batches_tracked().to_vector(), std::vector<float>{1.0f});
}

// ---- Finite differences
// ------------------------------------------------------------------------------

TEST(BatchNormTest, TrainingBackwardMatchesFiniteDifferences) {
  auto bn = make_bn2d(nn::BatchNormOptions(3), 100);
  check_gradients(*bn, random_tensor({3, 3, 2, 3}, 101));
}

TEST(BatchNormTest, EvalBackwardMatchesFiniteDifferences) {
  auto bn = make_bn2d(nn::BatchNormOptions(3), 102);
  set_values(bn->running_mean(), {0.1f, -0.2f, 0.3f});
  set_values(bn->running_var(), {0.5f, 2.0f, 1.0f});
  bn->eval();
  check_gradients(*bn, random_tensor({2, 3, 2, 2}, 103));
}

TEST(BatchNormTest, BatchNorm1dBackwardMatchesFiniteDifferences) {
  nn::BatchNorm1d bn(4);
  set_values(bn.weight()->value, {0.5f, 1.5f, -1.0f, 2.0f});
  check_gradients(bn, random_tensor({5, 4}, 104));
  check_gradients(bn, random_tensor({2, 4, 3}, 105));
}

TEST(BatchNormTest, UntrackedAffineOffBackwardMatchesFiniteDifferences) {
  nn::BatchNorm2d bn(nn::BatchNormOptions(2).affine(false).track_running_stats(false));
  bn.eval();
  check_gradients(bn, random_tensor({3, 2, 2, 2}, 108));
}

}  // namespace
}  // namespace syncbn
