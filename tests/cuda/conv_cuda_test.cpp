// cuda::conv2d_* (cuDNN) against cpu::conv2d_* (im2col + GEMM): odd sizes, strides, paddings,
// kernels from 1 to the image size, with and without bias, accumulation into dweight and dbias,
// and the empty batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/conv.h"
#include "cuda/conv.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::on_device;
using testing::random_values;

std::vector<float> absolute(std::vector<float> values) {
  for (float& v : values) v = std::fabs(v);
  return values;
}

// cuDNN and the CPU's GEMM sum each output's terms in different orders. The rounding error of
// a sum of L terms is a multiple of eps * sum |terms| (about sqrt(L) for random rounding), not of
// the result, which may cancel to near zero; so an element passes when
//   |cuda - cpu| <= 1e-5 |cpu| + 2 sqrt(L) eps magnitude,
// magnitude being the same convolution computed by the CPU kernel on absolute values.
void expect_conv_close(const std::vector<float>& actual, const std::vector<float>& expected,
                       const std::vector<float>& magnitude, int64_t length,
                       const std::string& what) {
  const double eps = std::numeric_limits<float>::epsilon();
  const double spread = 2.0 * std::sqrt(static_cast<double>(std::max<int64_t>(length, 1))) * eps;
  std::vector<double> atols(magnitude.size());
  for (std::size_t i = 0; i < atols.size(); ++i) atols[i] = spread * magnitude[i] + 1e-30;
  testing::expect_close(actual, expected, 1e-5, atols, what);
}

struct ConvCase {
  int64_t batch, in, height, width, out, kernel, stride, padding;
  bool bias;
};

cpu::Conv2dShape shape_of(const ConvCase& c) {
  cpu::Conv2dShape s{c.batch, c.in, c.height, c.width, c.out, c.kernel, c.stride, c.padding, 0, 0};
  s.out_height = (c.height + 2 * c.padding - c.kernel) / c.stride + 1;
  s.out_width = (c.width + 2 * c.padding - c.kernel) / c.stride + 1;
  return s;
}

std::string describe(const ConvCase& c) {
  return "conv N=" + std::to_string(c.batch) + " C=" + std::to_string(c.in) + " " +
         std::to_string(c.height) + "x" + std::to_string(c.width) + " O=" + std::to_string(c.out) +
         " K=" + std::to_string(c.kernel) + " s=" + std::to_string(c.stride) +
         " p=" + std::to_string(c.padding) + (c.bias ? " bias" : "");
}

std::vector<float> cpu_workspace(const cpu::Conv2dShape& s) {
  int64_t floats = 0;
  cpu::conv2d_workspace_size(s, &floats);
  return std::vector<float>(static_cast<std::size_t>(std::max<int64_t>(floats, 1)));
}

Tensor cuda_workspace(const cpu::Conv2dShape& s) {
  int64_t floats = -1;
  cuda::conv2d_workspace_size(s, &floats);
  EXPECT_GE(floats, 0);
  return Tensor::empty({std::max<int64_t>(floats, 1)}, Device::cuda(0));
}

const ConvCase kCases[] = {
    {2, 3, 7, 6, 4, 3, 2, 1, true},     {1, 2, 5, 5, 3, 1, 1, 0, true},
    {3, 5, 9, 7, 6, 5, 1, 2, false},    {3, 1, 11, 8, 2, 2, 3, 0, true},
    {5, 7, 13, 13, 10, 3, 1, 1, true},  {1, 3, 4, 4, 5, 4, 1, 0, false},
    {17, 12, 15, 9, 24, 3, 2, 1, true}, {4, 6, 10, 12, 3, 1, 2, 0, true},
};

TEST(ConvCudaTest, ForwardMatchesCpuForOddShapesStridesPaddingsAndKernels) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (const ConvCase& c : kCases) {
    const cpu::Conv2dShape s = shape_of(c);
    const auto x = random_values(s.batch * s.in_channels * s.height * s.width, seed += 3);
    const auto w =
        random_values(s.out_channels * s.in_channels * s.kernel * s.kernel, seed + 1, 0.3f);
    const auto b = random_values(s.out_channels, seed + 2);
    const int64_t out_numel = s.batch * s.out_channels * s.out_height * s.out_width;

    std::vector<float> workspace = cpu_workspace(s);
    std::vector<float> expected(out_numel), magnitude(out_numel);
    cpu::conv2d_forward(x.data(), w.data(), c.bias ? b.data() : nullptr, s, workspace.data(),
                        expected.data());
    const auto abs_x = absolute(x), abs_w = absolute(w), abs_b = absolute(b);
    cpu::conv2d_forward(abs_x.data(), abs_w.data(), c.bias ? abs_b.data() : nullptr, s,
                        workspace.data(), magnitude.data());

    Tensor x_dev = on_device(x), w_dev = on_device(w), b_dev = on_device(b);
    Tensor y_dev = Tensor::empty({out_numel}, Device::cuda(0));
    Tensor scratch = cuda_workspace(s);
    cuda::conv2d_forward(x_dev.data(), w_dev.data(), c.bias ? b_dev.data() : nullptr, s,
                         scratch.data(), y_dev.data());
    const auto actual = y_dev.to_vector();
    expect_conv_close(actual, expected, magnitude, s.in_channels * s.kernel * s.kernel,
                      describe(c) + " y");

    // The plan is cached and the forward algorithm deterministic: a second call is identical.
    cuda::conv2d_forward(x_dev.data(), w_dev.data(), c.bias ? b_dev.data() : nullptr, s,
                         scratch.data(), y_dev.data());
    EXPECT_EQ(y_dev.to_vector(), actual) << describe(c);
  }
}

TEST(ConvCudaTest, BackwardMatchesCpuAndAccumulatesWeightAndBiasGradients) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (const ConvCase& c : kCases) {
    const cpu::Conv2dShape s = shape_of(c);
    const int64_t plane = s.out_height * s.out_width;
    const auto x = random_values(s.batch * s.in_channels * s.height * s.width, seed += 5);
    const auto w =
        random_values(s.out_channels * s.in_channels * s.kernel * s.kernel, seed + 1, 0.3f);
    const auto dy = random_values(s.batch * s.out_channels * plane, seed + 2);
    // Gradients accumulate: start from non-zero values.
    const auto dweight0 = random_values(static_cast<int64_t>(w.size()), seed + 3);
    const auto dbias0 = random_values(s.out_channels, seed + 4);

    std::vector<float> workspace = cpu_workspace(s);
    std::vector<float> dx(x.size()), dweight = dweight0, dbias = dbias0;
    cpu::conv2d_backward(x.data(), w.data(), dy.data(), s, workspace.data(), dx.data(),
                         dweight.data(), c.bias ? dbias.data() : nullptr);
    const auto abs_x = absolute(x), abs_w = absolute(w), abs_dy = absolute(dy);
    std::vector<float> dx_mag(x.size()), dweight_mag = absolute(dweight0),
                                         dbias_mag = absolute(dbias0);
    cpu::conv2d_backward(abs_x.data(), abs_w.data(), abs_dy.data(), s, workspace.data(),
                         dx_mag.data(), dweight_mag.data(), dbias_mag.data());

    Tensor x_dev = on_device(x), w_dev = on_device(w), dy_dev = on_device(dy);
    Tensor dweight_dev = on_device(dweight0), dbias_dev = on_device(dbias0);
    Tensor dx_dev = Tensor::empty({static_cast<int64_t>(x.size())}, Device::cuda(0));
    Tensor scratch = cuda_workspace(s);
    cuda::conv2d_backward(x_dev.data(), w_dev.data(), dy_dev.data(), s, scratch.data(),
                          dx_dev.data(), dweight_dev.data(), c.bias ? dbias_dev.data() : nullptr);

    const std::string what = describe(c);
    expect_conv_close(dx_dev.to_vector(), dx, dx_mag, s.out_channels * s.kernel * s.kernel,
                      what + " dx");
    expect_conv_close(dweight_dev.to_vector(), dweight, dweight_mag, s.batch * plane,
                      what + " dweight");
    if (c.bias) {
      expect_conv_close(dbias_dev.to_vector(), dbias, dbias_mag, s.batch * plane, what + " dbias");
    } else {
      EXPECT_EQ(dbias_dev.to_vector(), dbias0) << what << ": dbias written without a bias";
    }
  }
}

TEST(ConvCudaTest, EmptyBatchNeedsNoWorkspaceAndLeavesGradientsAlone) {
  SYNCBN_REQUIRE_CUDA();
  const cpu::Conv2dShape s = shape_of({0, 3, 7, 7, 4, 3, 1, 1, true});
  int64_t floats = -1;
  cuda::conv2d_workspace_size(s, &floats);
  EXPECT_EQ(floats, 0);
  const auto w = random_values(4 * 3 * 3 * 3, 5);
  const auto dweight0 = random_values(static_cast<int64_t>(w.size()), 6);
  const auto dbias0 = random_values(4, 7);
  Tensor w_dev = on_device(w), b_dev = on_device(dbias0), dweight = on_device(dweight0),
         dbias = on_device(dbias0);
  Tensor scratch = Tensor::empty({1}, Device::cuda(0));
  Tensor x = Tensor::empty({1}, Device::cuda(0)), y = Tensor::empty({1}, Device::cuda(0));
  cuda::conv2d_forward(x.data(), w_dev.data(), b_dev.data(), s, scratch.data(), y.data());
  cuda::conv2d_backward(x.data(), w_dev.data(), y.data(), s, scratch.data(), x.data(),
                        dweight.data(), dbias.data());
  EXPECT_EQ(dweight.to_vector(), dweight0);
  EXPECT_EQ(dbias.to_vector(), dbias0);
}

}  // namespace
}  // namespace syncbn
