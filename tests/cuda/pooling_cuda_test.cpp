// The CUDA pooling kernels against the CPU kernels of the same names: windows with and without
// padding and overlap, odd planes, ties (the first maximum wins), NaN, and zero planes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/pooling.h"
#include "cuda/pooling.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close_rel;
using testing::on_device;
using testing::random_values;

// int32 values travel in float tensors (as the ops store max-pool indices), bit for bit.
Tensor int32_on_device(const std::vector<int32_t>& values) {
  std::vector<float> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(int32_t));
  return on_device(bits);
}
std::vector<int32_t> int32_values(const Tensor& t) {
  const std::vector<float> bits = t.to_vector();
  std::vector<int32_t> values(bits.size());
  std::memcpy(values.data(), bits.data(), bits.size() * sizeof(int32_t));
  return values;
}
int32_t* int32_data(Tensor& t) { return reinterpret_cast<int32_t*>(t.data()); }

struct PoolCase {
  int64_t planes, height, width, kernel, stride, padding;
};
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

std::string describe(const PoolCase& c) {
  return "planes=" + std::to_string(c.planes) + " " + std::to_string(c.height) + "x" +
         std::to_string(c.width) + " k=" + std::to_string(c.kernel) +
         " s=" + std::to_string(c.stride) + " p=" + std::to_string(c.padding);
}

const PoolCase kCases[] = {
    {6, 8, 8, 2, 2, 0},   {5, 9, 7, 2, 2, 0},   {7, 11, 13, 3, 2, 1}, {3, 10, 9, 3, 1, 1},
    {4, 5, 6, 1, 1, 0},   {2, 13, 11, 5, 3, 2}, {3, 7, 7, 7, 1, 0},   {1, 1, 1, 1, 1, 0},
    {300, 6, 5, 3, 2, 1}, {0, 8, 8, 2, 2, 0},   {2, 14, 14, 4, 4, 2},
};

// Random data; with `ties`, small integers, so windows hold equal maxima (as after a ReLU).
std::vector<float> pool_input(int64_t n, uint64_t seed, bool ties) {
  std::vector<float> x = random_values(n, seed);
  if (ties) {
    for (float& v : x) v = std::max(0.0f, std::round(v));
  }
  return x;
}

TEST(PoolingCudaTest, MaxPoolForwardGivesTheCpuMaximaAndFirstArgmax) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 1;
  for (const PoolCase& c : kCases) {
    for (bool ties : {false, true}) {
      const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
      const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
      auto x = pool_input(c.planes * c.height * c.width, seed += 2, ties);
      // A NaN wins its windows.
      if (x.size() > 10) x[10] = std::numeric_limits<float>::quiet_NaN();
      const int64_t out_numel = c.planes * ho * wo;
      std::vector<float> y(out_numel);
      std::vector<int32_t> indices(out_numel);
      cpu::max_pool2d_forward(x.data(), c.planes, c.height, c.width, c.kernel, c.stride, c.padding,
                              ho, wo, y.data(), indices.data());

      Tensor x_dev = on_device(x);
      Tensor y_dev = Tensor::empty({out_numel}, Device::cuda(0));
      Tensor indices_dev = Tensor::empty({out_numel}, Device::cuda(0));
      cuda::max_pool2d_forward(x_dev.data(), c.planes, c.height, c.width, c.kernel, c.stride,
                               c.padding, ho, wo, y_dev.data(), int32_data(indices_dev));
      const std::string what = describe(c) + (ties ? " ties" : "");
      const auto actual = y_dev.to_vector();
      ASSERT_EQ(actual.size(), y.size());
      for (std::size_t i = 0; i < y.size(); ++i) {
        if (std::isnan(y[i])) {
          EXPECT_TRUE(std::isnan(actual[i])) << what << " at " << i;
        } else {
          EXPECT_EQ(actual[i], y[i]) << what << " at " << i;
        }
      }
      EXPECT_EQ(int32_values(indices_dev), indices) << what;
    }
  }
}

TEST(PoolingCudaTest, MaxPoolBackwardRoutesGradientsToTheArgmaxLikeCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 200;
  for (const PoolCase& c : kCases) {
    for (bool ties : {false, true}) {
      const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
      const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
      const auto x = pool_input(c.planes * c.height * c.width, seed += 2, ties);
      const int64_t out_numel = c.planes * ho * wo;
      std::vector<float> y(out_numel);
      std::vector<int32_t> indices(out_numel);
      cpu::max_pool2d_forward(x.data(), c.planes, c.height, c.width, c.kernel, c.stride, c.padding,
                              ho, wo, y.data(), indices.data());
      const auto dy = random_values(out_numel, seed + 1);
      std::vector<float> dx(x.size());
      cpu::max_pool2d_backward(dy.data(), indices.data(), c.planes, c.height, c.width, ho, wo,
                               dx.data());

      Tensor dy_dev = on_device(dy), indices_dev = int32_on_device(indices);
      // Start from garbage: the kernel overwrites dx.
      Tensor dx_dev = Tensor::full({static_cast<int64_t>(x.size())}, 7.0f, Device::cuda(0));
      cuda::max_pool2d_backward(dy_dev.data(), int32_data(indices_dev), c.planes, c.height, c.width,
                                ho, wo, dx_dev.data());
      expect_close_rel(dx_dev.to_vector(), dx, 1e-5, describe(c) + (ties ? " ties" : ""));
    }
  }
}

TEST(PoolingCudaTest, AvgPoolForwardAndBackwardMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 400;
  for (const PoolCase& c : kCases) {
    const int64_t ho = out_size(c.height, c.kernel, c.stride, c.padding);
    const int64_t wo = out_size(c.width, c.kernel, c.stride, c.padding);
    const auto x = random_values(c.planes * c.height * c.width, seed += 2);
    const int64_t out_numel = c.planes * ho * wo;
    std::vector<float> y(out_numel);
    cpu::avg_pool2d_forward(x.data(), c.planes, c.height, c.width, c.kernel, c.stride, c.padding,
                            ho, wo, y.data());
    const auto dy = random_values(out_numel, seed + 1);
    std::vector<float> dx(x.size());
    cpu::avg_pool2d_backward(dy.data(), c.planes, c.height, c.width, c.kernel, c.stride, c.padding,
                             ho, wo, dx.data());

    Tensor x_dev = on_device(x), dy_dev = on_device(dy);
    Tensor y_dev = Tensor::empty({out_numel}, Device::cuda(0));
    Tensor dx_dev = Tensor::full({static_cast<int64_t>(x.size())}, 7.0f, Device::cuda(0));
    cuda::avg_pool2d_forward(x_dev.data(), c.planes, c.height, c.width, c.kernel, c.stride,
                             c.padding, ho, wo, y_dev.data());
    cuda::avg_pool2d_backward(dy_dev.data(), c.planes, c.height, c.width, c.kernel, c.stride,
                              c.padding, ho, wo, dx_dev.data());
    expect_close_rel(y_dev.to_vector(), y, 1e-5, describe(c) + " y");
    expect_close_rel(dx_dev.to_vector(), dx, 1e-5, describe(c) + " dx");
  }
}

TEST(PoolingCudaTest, GlobalAvgPoolForwardAndBackwardMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  struct Case {
    int64_t planes, plane_size;
  };
  uint64_t seed = 600;
  for (const Case& c :
       {Case{0, 49}, Case{1, 1}, Case{3, 7}, Case{37, 49}, Case{130, 33}, Case{5, 12545}}) {
    // A mean away from zero, as after a ReLU.
    const auto x = random_values(c.planes * c.plane_size, seed += 2, 1.0f, 0.7f);
    std::vector<float> y(c.planes);
    cpu::global_avg_pool2d_forward(x.data(), c.planes, c.plane_size, y.data());
    const auto dy = random_values(c.planes, seed + 1);
    std::vector<float> dx(x.size());
    cpu::global_avg_pool2d_backward(dy.data(), c.planes, c.plane_size, dx.data());

    Tensor x_dev = on_device(x), dy_dev = on_device(dy);
    Tensor y_dev = Tensor::empty({c.planes}, Device::cuda(0));
    Tensor dx_dev = Tensor::empty({static_cast<int64_t>(x.size())}, Device::cuda(0));
    cuda::global_avg_pool2d_forward(x_dev.data(), c.planes, c.plane_size, y_dev.data());
    cuda::global_avg_pool2d_backward(dy_dev.data(), c.planes, c.plane_size, dx_dev.data());
    const std::string what =
        "planes=" + std::to_string(c.planes) + " size=" + std::to_string(c.plane_size);
    expect_close_rel(y_dev.to_vector(), y, 1e-5, what + " y");
    expect_close_rel(dx_dev.to_vector(), dx, 1e-5, what + " dx");
  }
}

}  // namespace
}  // namespace syncbn
