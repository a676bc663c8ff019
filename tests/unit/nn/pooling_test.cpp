#include "syncbn/nn/pooling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "support/close.h"
#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::expect_close;
using testing::random_tensor;

struct PoolCase {
  int64_t batch, channels, height, width, kernel, stride, padding;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// A shuffled ramp: all values distinct and 0.1 apart, so a +-0.01 nudge never changes which
// element is a window's maximum (central differences stay exact).
Tensor distinct_values(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  std::vector<float> values(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = 0.1f * static_cast<float>(i - n / 2);
  Generator gen(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(values[i], values[gen.below(i + 1)]);
  return Tensor::from_vector(shape, values);
}

// Max or mean (over K*K, padding as zeros) of each window, in double.
std::vector<double> pool_reference(const PoolCase& c, const Tensor& x, bool max) {
  const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
  const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
  std::vector<double> y;
  for (int64_t plane = 0; plane < c.batch * c.channels; ++plane)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
        for (int64_t kh = 0; kh < c.kernel; ++kh)
          for (int64_t kw = 0; kw < c.kernel; ++kw) {
            const int64_t ih = oh * c.stride - c.padding + kh, iw = ow * c.stride - c.padding + kw;
            if (ih < 0 || ih >= c.height || iw < 0 || iw >= c.width) continue;
            const double v = x.data()[(plane * c.height + ih) * c.width + iw];
            best = std::max(best, v);
            sum += v;
          }
        y.push_back(max ? best : sum / double(c.kernel * c.kernel));
      }
  return y;
}

const PoolCase kCases[] = {
    {2, 3, 8, 6, 2, 2, 0},     // MaxPool2d(2)
    {2, 2, 7, 5, 3, 2, 1},     // odd sizes, padding
    {1, 2, 5, 6, 3, 1, 1},     // overlapping windows
    {3, 1, 9, 7, 2, 3, 0},     // stride past the kernel: some inputs in no window
    {4, 16, 24, 22, 2, 2, 0},  // large enough for the parallel kernels
};

TEST(MaxPool2dTest, ForwardMatchesDirectMaximum) {
  uint64_t seed = 0;
  for (const PoolCase& c : kCases) {
    nn::MaxPool2d pool(c.kernel, c.stride, c.padding);
    Tensor x = random_tensor({c.batch, c.channels, c.height, c.width}, ++seed);
    Tensor y = pool.forward(x);
    ASSERT_EQ(y.shape(),
              (Shape{c.batch, c.channels, out_size(c.height, c.kernel, c.stride, c.padding),
                     out_size(c.width, c.kernel, c.stride, c.padding)}));
    expect_close(y.to_vector(), pool_reference(c, x, true), 0.0, 0.0,
                 "max pool k" + std::to_string(c.kernel));
  }
}

TEST(MaxPool2dTest, BackwardMatchesFiniteDifferences) {
  uint64_t seed = 10;
  for (const PoolCase& c : kCases) {
    if (c.batch * c.channels * c.height * c.width > 2000) continue;  // keep the test fast
    nn::MaxPool2d pool(c.kernel, c.stride, c.padding);
    check_gradients(pool, distinct_values({c.batch, c.channels, c.height, c.width}, ++seed));
  }
}

TEST(MaxPool2dTest, BackwardRoutesEachGradientToItsWindowMaximumOnALargeInput) {
  const PoolCase& c = kCases[4];
  nn::MaxPool2d pool(2);
  Tensor x = distinct_values({c.batch, c.channels, c.height, c.width}, 20);
  Tensor y = pool.forward(x);
  Tensor dy = random_tensor(y.shape(), 21);
  const auto dx = pool.backward(dy).to_vector();
  std::vector<double> expected(x.numel(), 0.0);
  const int64_t ho = y.size(2), wo = y.size(3);
  for (int64_t plane = 0; plane < c.batch * c.channels; ++plane)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        int64_t arg = -1;
        for (int64_t kh = 0; kh < 2; ++kh)
          for (int64_t kw = 0; kw < 2; ++kw) {
            const int64_t i = (plane * c.height + 2 * oh + kh) * c.width + 2 * ow + kw;
            if (arg < 0 || x.data()[i] > x.data()[arg]) arg = i;
          }
        expected[arg] += dy.data()[(plane * ho + oh) * wo + ow];
      }
  expect_close(dx, expected, 0.0, 0.0, "dx");
}

TEST(MaxPool2dTest, TiesSendTheGradientToTheFirstMaximumAndNaNPropagates) {
  nn::MaxPool2d pool(2);
  pool.forward(Tensor::full({1, 1, 2, 4}, 1.0f));
  const auto dx = pool.backward(Tensor::from_vector({1, 1, 1, 2}, {3.0f, 4.0f})).to_vector();
  EXPECT_EQ(dx, (std::vector<float>{3.0f, 0.0f, 4.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto y =
      pool.forward(Tensor::from_vector({1, 1, 2, 2}, {1.0f, nan, 5.0f, 2.0f})).to_vector();
  EXPECT_TRUE(std::isnan(y[0]));
  // The general window path: every window that holds the NaN gives NaN (PyTorch's values).
  nn::MaxPool2d overlapping(3, 1, 1);
  const auto z =
      overlapping.forward(Tensor::from_vector({1, 1, 3, 3}, {1, nan, 0, 5, 2, 0, 0, 0, 0}))
          .to_vector();
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(std::isnan(z[i])) << "at " << i;
  EXPECT_EQ(z[6], 5.0f);
  EXPECT_EQ(z[7], 5.0f);
  EXPECT_EQ(z[8], 2.0f);
}

TEST(AvgPool2dTest, ForwardMatchesDirectMeanCountingPadding) {
  uint64_t seed = 30;
  for (const PoolCase& c : kCases) {
    nn::AvgPool2d pool(c.kernel, c.stride, c.padding);
    Tensor x = random_tensor({c.batch, c.channels, c.height, c.width}, ++seed);
    expect_close(pool.forward(x).to_vector(), pool_reference(c, x, false), 1e-5, 1e-6,
                 "avg pool k" + std::to_string(c.kernel));
  }
}

TEST(AvgPool2dTest, BackwardMatchesFiniteDifferences) {
  uint64_t seed = 40;
  for (const PoolCase& c : kCases) {
    if (c.batch * c.channels * c.height * c.width > 2000) continue;
    nn::AvgPool2d pool(c.kernel, c.stride, c.padding);
    check_gradients(pool, random_tensor({c.batch, c.channels, c.height, c.width}, ++seed));
  }
}

TEST(GlobalAvgPool2dTest, ForwardIsThePlaneMeanAndBackwardMatchesFiniteDifferences) {
  nn::GlobalAvgPool2d pool;
  Tensor x = random_tensor({3, 4, 5, 7}, 50);
  Tensor y = pool.forward(x);
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  std::vector<double> expected(12, 0.0);
  for (int64_t p = 0; p < 12; ++p) {
    for (int64_t i = 0; i < 35; ++i) expected[p] += x.data()[p * 35 + i] / 35.0;
  }
  expect_close(y.to_vector(), expected, 1e-5, 1e-6, "mean");
  check_gradients(pool, x);
  EXPECT_EQ(pool.type_name(), "AdaptiveAvgPool2d");
  EXPECT_EQ(pool.describe(), "output_size=1");
}

TEST(PoolingTest, EmptyBatchGivesEmptyOutputs) {
  nn::MaxPool2d max_pool(2);
  EXPECT_EQ(max_pool.forward(Tensor::zeros({0, 3, 4, 4})).shape(), (Shape{0, 3, 2, 2}));
  EXPECT_EQ(max_pool.backward(Tensor::zeros({0, 3, 2, 2})).shape(), (Shape{0, 3, 4, 4}));
  nn::AvgPool2d avg_pool(3, 1, 1);
  EXPECT_EQ(avg_pool.forward(Tensor::zeros({0, 3, 4, 4})).shape(), (Shape{0, 3, 4, 4}));
  EXPECT_EQ(avg_pool.backward(Tensor::zeros({0, 3, 4, 4})).shape(), (Shape{0, 3, 4, 4}));
  nn::GlobalAvgPool2d global;
  EXPECT_EQ(global.forward(Tensor::zeros({0, 3, 4, 4})).shape(), (Shape{0, 3}));
  EXPECT_EQ(global.backward(Tensor::zeros({0, 3})).shape(), (Shape{0, 3, 4, 4}));
}

TEST(PoolingTest, BadWindowsAndShapesThrow) {
  EXPECT_THROW(nn::MaxPool2d(2, 2, 2), Error);  // padding above kernel / 2
  EXPECT_THROW(nn::MaxPool2d(0), Error);
  EXPECT_THROW(nn::AvgPool2d(3, 0), Error);
  nn::MaxPool2d max_pool(2);
  EXPECT_THROW(max_pool.backward(Tensor::zeros({1, 1, 1, 1})), Error);  // before any forward
  EXPECT_THROW(max_pool.forward(Tensor::zeros({3, 4, 4})), Error);      // not NCHW
  EXPECT_THROW(max_pool.forward(Tensor::zeros({1, 1, 1, 4})), Error);   // smaller than the window
  max_pool.forward(Tensor::zeros({1, 2, 4, 4}));
  EXPECT_THROW(max_pool.backward(Tensor::zeros({1, 2, 4, 4})), Error);
  nn::AvgPool2d avg_pool(2);
  avg_pool.forward(Tensor::zeros({1, 2, 4, 4}));
  EXPECT_THROW(avg_pool.backward(Tensor::zeros({1, 2, 3, 2})), Error);
  nn::GlobalAvgPool2d global;
  EXPECT_THROW(global.forward(Tensor::zeros({2, 3})), Error);
  EXPECT_THROW(global.forward(Tensor::zeros({2, 3, 0, 4})), Error);
  global.forward(Tensor::zeros({2, 3, 4, 4}));
  EXPECT_THROW(global.backward(Tensor::zeros({2, 4})), Error);
}

TEST(PoolingTest, DescriptionsMatchPyTorchRepr) {
  EXPECT_EQ(nn::MaxPool2d(2).describe(),
            "kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False");
  EXPECT_EQ(nn::MaxPool2d(2).type_name(), "MaxPool2d");
  EXPECT_EQ(nn::AvgPool2d(3, 2, 1).describe(), "kernel_size=3, stride=2, padding=1");
  EXPECT_EQ(nn::AvgPool2d(3).type_name(), "AvgPool2d");
}

}  // namespace
}  // namespace syncbn
