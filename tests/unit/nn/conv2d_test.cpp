#include "syncbn/nn/conv2d.h"

#include <gtest/gtest.h>

#include <cmath>

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

struct ConvCase {
  int64_t batch, in, height, width, out, kernel, stride, padding;
  bool bias;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

nn::Conv2d make_conv(const ConvCase& c, uint64_t seed) {
  return nn::Conv2d(
      nn::Conv2dOptions(c.in, c.out, c.kernel).stride(c.stride).padding(c.padding).bias(c.bias),
      seed);
}

// Direct convolution in double: y[n][o][oh][ow] = b[o] + sum_{c,kh,kw} w[o][c][kh][kw] *
// x[n][c][oh*s - p + kh][ow*s - p + kw], zero outside the image.
std::vector<double> conv_reference(const ConvCase& c, const Tensor& x, const Tensor& w,
                                   const Tensor* b) {
  const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
  const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
  std::vector<double> y(static_cast<std::size_t>(c.batch * c.out * ho * wo));
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t o = 0; o < c.out; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          double sum = b ? b->data()[o] : 0.0;
          for (int64_t ci = 0; ci < c.in; ++ci)
            for (int64_t kh = 0; kh < c.kernel; ++kh)
              for (int64_t kw = 0; kw < c.kernel; ++kw) {
                const int64_t ih = oh * c.stride - c.padding + kh;
                const int64_t iw = ow * c.stride - c.padding + kw;
                if (ih < 0 || ih >= c.height || iw < 0 || iw >= c.width) continue;
                sum += double(w.data()[((o * c.in + ci) * c.kernel + kh) * c.kernel + kw]) *
                       x.data()[((n * c.in + ci) * c.height + ih) * c.width + iw];
              }
          y[((n * c.out + o) * ho + oh) * wo + ow] = sum;
        }
  return y;
}

TEST(Conv2dTest, ForwardMatchesDirectConvolutionForStridesPaddingsAndOddSizes) {
  const ConvCase cases[] = {
      {2, 3, 7, 6, 4, 3, 2, 1, true},   {1, 2, 5, 5, 3, 1, 1, 0, true},
      {2, 2, 9, 7, 3, 5, 1, 2, false},  {3, 1, 11, 8, 2, 2, 3, 0, true},
      {2, 3, 4, 6, 2, 3, 1, 3, true},    // padding wider than the kernel reach
      {4, 8, 13, 11, 6, 3, 1, 1, true},  // large enough for the parallel kernels
  };
  uint64_t seed = 0;
  for (const ConvCase& c : cases) {
    nn::Conv2d conv = make_conv(c, ++seed);
    Tensor x = random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
    Tensor y = conv.forward(x);
    const Shape expected_shape{c.batch, c.out, out_size(c.height, c.kernel, c.stride, c.padding),
                               out_size(c.width, c.kernel, c.stride, c.padding)};
    ASSERT_EQ(y.shape(), expected_shape);
    expect_close(y.to_vector(),
                 conv_reference(c, x, conv.weight().value, c.bias ? &conv.bias()->value : nullptr),
                 1e-4, 1e-5, "conv k" + std::to_string(c.kernel) + " s" + std::to_string(c.stride));
  }
}

TEST(Conv2dTest, BackwardMatchesFiniteDifferences) {
  const ConvCase cases[] = {{2, 2, 5, 4, 3, 3, 2, 1, true},
                            {2, 2, 4, 5, 2, 3, 1, 1, false},
                            {1, 3, 5, 5, 2, 2, 3, 0, true}};
  uint64_t seed = 20;
  for (const ConvCase& c : cases) {
    nn::Conv2d conv = make_conv(c, ++seed);
    check_gradients(conv, random_tensor({c.batch, c.in, c.height, c.width}, ++seed));
  }
}

struct Gradients {
  std::vector<double> dx, dweight, dbias;
};

// The adjoint of the direct convolution, in double: for every output element, dy flows back to
// each input and weight element that produced it.
Gradients conv_adjoint(const ConvCase& c, const Tensor& x, const Tensor& w, const Tensor& dy) {
  const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
  const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
  Gradients g{std::vector<double>(x.numel(), 0.0), std::vector<double>(w.numel(), 0.0),
              std::vector<double>(c.out, 0.0)};
  for (int64_t n = 0; n < c.batch; ++n)
    for (int64_t o = 0; o < c.out; ++o)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          const double d = dy.data()[((n * c.out + o) * ho + oh) * wo + ow];
          g.dbias[o] += d;
          for (int64_t ci = 0; ci < c.in; ++ci)
            for (int64_t kh = 0; kh < c.kernel; ++kh)
              for (int64_t kw = 0; kw < c.kernel; ++kw) {
                const int64_t ih = oh * c.stride - c.padding + kh;
                const int64_t iw = ow * c.stride - c.padding + kw;
                if (ih < 0 || ih >= c.height || iw < 0 || iw >= c.width) continue;
                const int64_t xi = ((n * c.in + ci) * c.height + ih) * c.width + iw;
                const int64_t wi = ((o * c.in + ci) * c.kernel + kh) * c.kernel + kw;
                g.dx[xi] += d * w.data()[wi];
                g.dweight[wi] += d * x.data()[xi];
              }
        }
  return g;
}

// The kernels cut the batch into groups of samples (one sample when an image has >= 256 output
// positions, else enough samples to reach 256) spread over the threads, with per-thread weight
// gradients summed at the end. Every grouping and thread count must give the direct result.
TEST(Conv2dTest, ForwardAndBackwardMatchDirectReferenceForEveryGroupingAndThreadCount) {
  const ConvCase cases[] = {
      {3, 2, 17, 16, 3, 3, 1, 1, true},   // 272 positions: one sample per group, 3 groups
      {19, 3, 6, 6, 4, 3, 1, 1, true},    // 36 positions: groups of 8, 8 and 3 samples
      {2, 6, 10, 10, 7, 3, 1, 1, false},  // one group holding the batch (parallel inside it)
      {15, 2, 9, 11, 3, 3, 2, 0, true},   // strided, 20 positions: groups of 13 and 2 samples
  };
  const int saved_threads = num_threads();
  uint64_t seed = 60;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    for (const ConvCase& c : cases) {
      const std::string what = "threads " + std::to_string(threads) + " batch " +
                               std::to_string(c.batch) + " " + std::to_string(c.height) + "x" +
                               std::to_string(c.width);
      nn::Conv2d conv = make_conv(c, ++seed);
      Tensor x = random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
      Tensor y = conv.forward(x);
      const Tensor* bias = c.bias ? &conv.bias()->value : nullptr;
      expect_close(y.to_vector(), conv_reference(c, x, conv.weight().value, bias), 1e-4, 1e-5,
                   what + " y");
      Tensor dy = random_tensor(y.shape(), ++seed);
      Tensor dx = conv.backward(dy);
      const Gradients expected = conv_adjoint(c, x, conv.weight().value, dy);
      expect_close(dx.to_vector(), expected.dx, 1e-4, 1e-5, what + " dx");
      expect_close(conv.weight().grad.to_vector(), expected.dweight, 1e-4, 1e-4, what + " dweight");
      if (c.bias) {
        expect_close(conv.bias()->grad.to_vector(), expected.dbias, 1e-4, 1e-4, what + " dbias");
      }
    }
  }
  set_num_threads(saved_threads);
}

TEST(Conv2dTest, GradientsAccumulateAcrossBackwardCalls) {
  nn::Conv2d conv(nn::Conv2dOptions(2, 3, 3).padding(1), 1);
  Tensor x = random_tensor({2, 2, 4, 4}, 2);
  Tensor dy = random_tensor({2, 3, 4, 4}, 3);
  conv.forward(x);
  conv.backward(dy);
  const auto dw = conv.weight().grad.to_vector();
  const auto db = conv.bias()->grad.to_vector();
  conv.backward(dy);
  std::vector<double> twice_dw(dw.begin(), dw.end()), twice_db(db.begin(), db.end());
  for (auto& v : twice_dw) v *= 2;
  for (auto& v : twice_db) v *= 2;
  expect_close(conv.weight().grad.to_vector(), twice_dw, 1e-6, 1e-7, "dweight");
  expect_close(conv.bias()->grad.to_vector(), twice_db, 1e-6, 1e-7, "dbias");
  // One backward's bias gradient is the sum of dy per channel.
  std::vector<double> sums(3, 0.0);
  for (int64_t i = 0; i < dy.numel(); ++i) sums[(i / 16) % 3] += dy.data()[i];
  expect_close(db, sums, 1e-5, 1e-6, "dbias of one backward");
}

TEST(Conv2dTest, InitialisationParameterNamesAndDescription) {
  nn::Conv2d conv(nn::Conv2dOptions(8, 16, 3).padding(1), 9);
  const double bound = 1.0 / std::sqrt(8.0 * 9.0);
  const auto params = conv.named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second->value.shape(), (Shape{16, 8, 3, 3}));
  EXPECT_FALSE(params[0].second->is_norm_or_bias);
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_TRUE(params[1].second->is_norm_or_bias);
  double max_abs = 0.0;
  for (float v : params[0].second->value.to_vector())
    max_abs = std::max(max_abs, std::fabs(double(v)));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.95 * bound);
  for (float v : params[1].second->value.to_vector()) EXPECT_LE(std::fabs(v), bound);

  EXPECT_EQ(conv.type_name(), "Conv2d");
  EXPECT_EQ(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1)).describe(),
            "1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)");
  nn::Conv2d downsample(nn::Conv2dOptions(3, 8, 1).stride(2).bias(false));
  EXPECT_EQ(downsample.describe(), "3, 8, kernel_size=(1, 1), stride=(2, 2), bias=False");
  EXPECT_EQ(downsample.named_parameters().size(), 1u);
}

TEST(Conv2dTest, EmptyBatchGivesEmptyOutputAndZeroGradients) {
  nn::Conv2d conv(nn::Conv2dOptions(2, 3, 3).padding(1));
  Tensor y = conv.forward(Tensor::zeros({0, 2, 5, 5}));
  EXPECT_EQ(y.shape(), (Shape{0, 3, 5, 5}));
  Tensor dx = conv.backward(Tensor::zeros({0, 3, 5, 5}));
  EXPECT_EQ(dx.shape(), (Shape{0, 2, 5, 5}));
  for (float v : conv.weight().grad.to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : conv.bias()->grad.to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(Conv2dTest, WrongShapesThrow) {
  nn::Conv2d conv(nn::Conv2dOptions(2, 3, 3));
  EXPECT_THROW(conv.backward(Tensor::zeros({1, 3, 3, 3})), Error);  // before any forward
  EXPECT_THROW(conv.forward(Tensor::zeros({2, 5, 5})), Error);      // not NCHW
  EXPECT_THROW(conv.forward(Tensor::zeros({1, 3, 5, 5})), Error);   // wrong channels
  EXPECT_THROW(conv.forward(Tensor::zeros({1, 2, 2, 5})), Error);   // smaller than the kernel
  conv.forward(Tensor::zeros({1, 2, 5, 5}));
  EXPECT_THROW(conv.backward(Tensor::zeros({1, 3, 5, 5})), Error);  // dy not the output shape
  EXPECT_THROW(nn::Conv2d(nn::Conv2dOptions(2, 3, 3).stride(0)), Error);
  EXPECT_THROW(nn::Conv2d(nn::Conv2dOptions(0, 3, 3)), Error);
}

}  // namespace
}  // namespace syncbn
