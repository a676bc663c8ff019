// The CUDA elementwise kernels against the CPU kernels of the same names: sizes around the
// vector width (0, 1, 3, 4, 5, ...) and larger odd sizes, aligned and misaligned pointers (the
// float4 and scalar paths), in-place use, NaN handling, and the dropout mask's identity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/elementwise.h"
#include "cuda/elementwise.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close;
using testing::expect_close_rel;
using testing::on_device;
using testing::random_values;

const int64_t kSizes[] = {0, 1, 3, 4, 5, 17, 1000, 100003};

// Equal values, where NaN equals NaN.
void expect_same(const std::vector<float>& actual, const std::vector<float>& expected,
                 const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (std::isnan(expected[i])) {
      ASSERT_TRUE(std::isnan(actual[i])) << what << " at " << i;
    } else {
      ASSERT_EQ(actual[i], expected[i]) << what << " at " << i;
    }
  }
}

std::string label(const char* op, int64_t n, int64_t offset) {
  return std::string(op) + " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
}

TEST(ElementwiseCudaTest, ReluForwardAndBackwardMatchCpuIncludingNaNAndZeros) {
  SYNCBN_REQUIRE_CUDA();
  for (int64_t n : kSizes) {
    for (int64_t offset : {0, 1}) {
      auto x = random_values(n, 10 + n);
      for (int64_t i = 0; i < n; i += 7) x[i] = 0.0f;
      if (n > 2) x[2] = std::numeric_limits<float>::quiet_NaN();
      const auto dy = random_values(n, 20 + n);
      std::vector<float> y(n), dx(n);
      cpu::relu_forward(x.data(), n, y.data());
      cpu::relu_backward(y.data(), dy.data(), n, dx.data());

      Tensor x_dev = on_device(x, offset), dy_dev = on_device(dy, offset);
      Tensor y_dev = on_device(std::vector<float>(n), offset);
      Tensor dx_dev = on_device(std::vector<float>(n), offset);
      cuda::relu_forward(x_dev.data(), n, y_dev.data());
      cuda::relu_backward(y_dev.data(), dy_dev.data(), n, dx_dev.data());
      expect_same(y_dev.to_vector(), y, label("relu_forward", n, offset));
      expect_same(dx_dev.to_vector(), dx, label("relu_backward", n, offset));

      // In place: y aliases x.
      cuda::relu_forward(x_dev.data(), n, x_dev.data());
      expect_same(x_dev.to_vector(), y, label("relu_forward in place", n, offset));
    }
  }
}

TEST(ElementwiseCudaTest, DropoutMaskIsTheCpuMaskForTheSameSeed) {
  SYNCBN_REQUIRE_CUDA();
  for (int64_t n : kSizes) {
    for (float p : {0.0f, 0.1f, 0.5f, 0.9f}) {
      for (uint64_t seed : {uint64_t{0}, uint64_t{12345}, ~uint64_t{0}}) {
        const auto x = random_values(n, seed + 1);
        std::vector<float> mask(n), y(n);
        cpu::dropout_forward(x.data(), seed, p, n, mask.data(), y.data());
        Tensor x_dev = on_device(x);
        Tensor mask_dev = on_device(std::vector<float>(n)),
               y_dev = on_device(std::vector<float>(n));
        cuda::dropout_forward(x_dev.data(), seed, p, n, mask_dev.data(), y_dev.data());
        const std::string what = "dropout n=" + std::to_string(n) + " p=" + std::to_string(p) +
                                 " seed=" + std::to_string(seed);
        expect_same(mask_dev.to_vector(), mask, what + " mask");
        expect_same(y_dev.to_vector(), y, what + " y");
      }
    }
  }
}

TEST(ElementwiseCudaTest, MultiplyAddAxpyScaleMatchCpuAlignedMisalignedAndInPlace) {
  SYNCBN_REQUIRE_CUDA();
  for (int64_t n : kSizes) {
    for (int64_t offset : {0, 1}) {
      const auto a = random_values(n, 30 + n), b = random_values(n, 40 + n, 3.0f);
      Tensor a_dev = on_device(a, offset), b_dev = on_device(b, offset);
      Tensor out_dev = on_device(std::vector<float>(n), offset);

      std::vector<float> expected(n);
      cpu::multiply(a.data(), b.data(), n, expected.data());
      cuda::multiply(a_dev.data(), b_dev.data(), n, out_dev.data());
      expect_close_rel(out_dev.to_vector(), expected, 1e-5, label("multiply", n, offset));

      cpu::add(a.data(), b.data(), n, expected.data());
      cuda::add(a_dev.data(), b_dev.data(), n, out_dev.data());
      expect_close_rel(out_dev.to_vector(), expected, 1e-5, label("add", n, offset));

      // y += alpha * x, in place on y.
      std::vector<float> y = b;
      cpu::axpy(-0.75f, a.data(), n, y.data());
      Tensor y_dev = on_device(b, offset);
      cuda::axpy(-0.75f, a_dev.data(), n, y_dev.data());
      expect_close_rel(y_dev.to_vector(), y, 1e-5, label("axpy", n, offset));

      std::vector<float> x = a;
      cpu::scale(1.0f / 3.0f, n, x.data());
      cuda::scale(1.0f / 3.0f, n, a_dev.data());
      expect_close_rel(a_dev.to_vector(), x, 1e-5, label("scale", n, offset));

      // out == a: a += b.
      std::vector<float> sum = x;
      cpu::add(sum.data(), b.data(), n, sum.data());
      cuda::add(a_dev.data(), b_dev.data(), n, a_dev.data());
      expect_close_rel(a_dev.to_vector(), sum, 1e-5, label("add in place", n, offset));
    }
  }
}

struct BiasCase {
  int64_t outer, channels, inner;
};
const BiasCase kBiasCases[] = {{0, 5, 3},   {3, 0, 5},    {4, 7, 0},   {1, 1, 1},
                               {5, 3, 1},   {37, 129, 1}, {2, 3, 49},  {3, 5, 7},
                               {7, 13, 25}, {2, 70, 1},   {300, 3, 1}, {9, 6, 1001}};

TEST(ElementwiseCudaTest, BroadcastAndAddBiasMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 50;
  for (const BiasCase& c : kBiasCases) {
    const int64_t n = c.outer * c.channels * c.inner;
    const auto bias = random_values(c.channels, seed += 2);
    const auto y0 = random_values(n, seed + 1);
    const std::string what = "(" + std::to_string(c.outer) + ", " + std::to_string(c.channels) +
                             ", " + std::to_string(c.inner) + ")";
    Tensor bias_dev = on_device(bias);

    std::vector<float> y = y0;
    cpu::broadcast_bias(bias.data(), c.outer, c.channels, c.inner, y.data());
    Tensor y_dev = on_device(y0);
    cuda::broadcast_bias(bias_dev.data(), c.outer, c.channels, c.inner, y_dev.data());
    expect_same(y_dev.to_vector(), y, "broadcast_bias " + what);

    y = y0;
    cpu::add_bias(bias.data(), c.outer, c.channels, c.inner, y.data());
    y_dev = on_device(y0);
    cuda::add_bias(bias_dev.data(), c.outer, c.channels, c.inner, y_dev.data());
    expect_close_rel(y_dev.to_vector(), y, 1e-5, "add_bias " + what);
  }
}

TEST(ElementwiseCudaTest, BiasGradAccumulatesTheCpuSumsForRowsAndPlanes) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 80;
  for (const BiasCase& c : kBiasCases) {
    const int64_t n = c.outer * c.channels * c.inner;
    // A mean far from zero: the sums are large, as the gradients of a biased activation are.
    const auto dy = random_values(n, seed += 2, 1.0f, 0.5f);
    const auto dbias0 = random_values(c.channels, seed + 1);
    const std::string what = "bias_grad (" + std::to_string(c.outer) + ", " +
                             std::to_string(c.channels) + ", " + std::to_string(c.inner) + ")";
    std::vector<float> dbias = dbias0;
    cpu::bias_grad(dy.data(), c.outer, c.channels, c.inner, dbias.data());
    Tensor dy_dev = on_device(dy), dbias_dev = on_device(dbias0);
    cuda::bias_grad(dy_dev.data(), c.outer, c.channels, c.inner, dbias_dev.data());
    // Both sum in double (the CPU adds float partial sums of each plane), round the sum once to
    // float and add it to the start value: they agree within 1e-5 relative, or the rounding of
    // the CPU's float partial sums over a plane of `inner` values (about sqrt(inner) eps times
    // the magnitude the sum is made of).
    std::vector<double> atols(static_cast<std::size_t>(c.channels));
    for (int64_t ch = 0; ch < c.channels; ++ch) {
      double magnitude = std::fabs(dbias0[ch]);
      for (int64_t i = 0; i < c.outer; ++i) {
        for (int64_t j = 0; j < c.inner; ++j) {
          magnitude += std::fabs(dy[(i * c.channels + ch) * c.inner + j]);
        }
      }
      atols[ch] = 2.0 * std::sqrt(static_cast<double>(c.inner)) *
                  std::numeric_limits<float>::epsilon() * magnitude;
    }
    expect_close(dbias_dev.to_vector(), dbias, 1e-5, atols, what);
  }
}

}  // namespace
}  // namespace syncbn
