// The CUDA GroupNorm / LayerNorm / InstanceNorm kernels against the CPU kernels of the same
// name, on the same host data, within 1e-5 relative (parameter gradients, which are sums, within
// 1e-5 relative plus 1e-6 of the sum of their terms' magnitudes).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cpu/group_norm.h"
#include "cuda/group_norm.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/device.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close;
using testing::expect_close_rel;
using testing::on_device;
using testing::random_values;

constexpr double kRtol = 1e-5;
constexpr double kEps = 1e-5;

// x (N, C, S) with G groups.
struct Case {
  int64_t n, c, s, g;
  int64_t numel() const { return n * c * s; }
  cpu::GroupNormShape shape() const { return {n, c, s, g}; }
  std::string str() const {
    return "(N, C, S, G) = (" + std::to_string(n) + ", " + std::to_string(c) + ", " +
           std::to_string(s) + ", " + std::to_string(g) + ")";
  }
};

// GroupNorm with odd and vector-friendly S, InstanceNorm (G = C), LayerNorm views (S = 1,
// G = 1, C = D), long rows split over blocks, N = 0 and S = 0.
std::vector<Case> cases() {
  return {{3, 6, 13, 3}, {2, 8, 16, 4}, {4, 12, 1, 3}, {5, 7, 1, 7},    {2, 10, 49, 5},
          {6, 32, 1, 1}, {7, 30, 1, 1}, {4, 6, 8, 6},  {3, 5, 7, 5},    {2, 4, 100000, 1},
          {0, 4, 5, 2},  {3, 6, 0, 2},  {1, 1, 1, 1},  {64, 768, 1, 1}, {2, 64, 9, 32}};
}

TEST(GroupNormCudaTest, ForwardMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 10;
  for (const Case& k : cases()) {
    for (bool affine : {false, true}) {
      for (float data_mean : {0.5f, 1e4f}) {  // 1e4: the variance must keep its digits
        SCOPED_TRACE(k.str() + (affine ? " affine" : "") + " mean " + std::to_string(data_mean));
        const int64_t rows = k.n * k.g;
        const std::vector<float> x = random_values(k.numel(), ++seed, 1.0f, data_mean);
        const std::vector<float> weight = random_values(k.c, ++seed, 0.5f, 1.0f);
        const std::vector<float> bias = random_values(k.c, ++seed, 0.5f, 0.0f);
        std::vector<float> y(x.size()), mean(rows), invstd(rows);
        cpu::group_norm_forward(x.data(), affine ? weight.data() : nullptr,
                                affine ? bias.data() : nullptr, k.shape(), kEps, y.data(),
                                mean.data(), invstd.data());

        const Tensor x_d = on_device(x);
        const Tensor weight_d = on_device(weight), bias_d = on_device(bias);
        Tensor y_d = Tensor::zeros({k.numel()}, Device::cuda(0));
        Tensor mean_d = Tensor::zeros({rows}, Device::cuda(0));
        Tensor invstd_d = Tensor::zeros({rows}, Device::cuda(0));
        cuda::group_norm_forward(x_d.data(), affine ? weight_d.data() : nullptr,
                                 affine ? bias_d.data() : nullptr, k.shape(), kEps, y_d.data(),
                                 mean_d.data(), invstd_d.data());
        expect_close_rel(mean_d.to_vector(), mean, kRtol, "mean");
        expect_close_rel(invstd_d.to_vector(), invstd, kRtol, "invstd");
        // With mean 1e4, y = (x - mean) * scale: the mean's last bit (1e-3 at 1e4) is a 1e-3
        // error in y on either side; only the row statistics are compared there.
        if (data_mean < 10.0f) expect_close_rel(y_d.to_vector(), y, kRtol, "y");
      }
    }
  }
}

TEST(GroupNormCudaTest, BackwardMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 1000;
  for (const Case& k : cases()) {
    for (int variant = 0; variant < 3; ++variant) {  // affine; no weight; no parameter grads
      SCOPED_TRACE(k.str() + " variant " + std::to_string(variant));
      const bool with_weight = variant != 1;
      const bool with_grads = variant != 2;
      const int64_t rows = k.n * k.g;
      const std::vector<float> x = random_values(k.numel(), ++seed, 1.5f, 0.3f);
      const std::vector<float> dy = random_values(k.numel(), ++seed, 1.0f, 0.1f);
      const std::vector<float> weight = random_values(k.c, ++seed, 0.5f, 1.0f);
      std::vector<float> grad_weight = random_values(k.c, ++seed, 1.0f, 0.0f);
      std::vector<float> grad_bias = random_values(k.c, ++seed, 1.0f, 0.0f);
      // Statistics from the CPU forward, shared by both backward passes.
      std::vector<float> y(x.size()), mean(rows), invstd(rows);
      cpu::group_norm_forward(x.data(), nullptr, nullptr, k.shape(), kEps, y.data(), mean.data(),
                              invstd.data());

      const Tensor x_d = on_device(x), dy_d = on_device(dy);
      const Tensor weight_d = on_device(weight);
      const Tensor mean_d = on_device(mean), invstd_d = on_device(invstd);
      Tensor grad_weight_d = on_device(grad_weight), grad_bias_d = on_device(grad_bias);
      Tensor dx_d = Tensor::zeros({k.numel()}, Device::cuda(0));
      cuda::group_norm_backward(dy_d.data(), x_d.data(), mean_d.data(), invstd_d.data(),
                                with_weight ? weight_d.data() : nullptr, k.shape(), dx_d.data(),
                                with_grads ? grad_weight_d.data() : nullptr,
                                with_grads ? grad_bias_d.data() : nullptr);

      const std::vector<float> grad_weight_before = grad_weight, grad_bias_before = grad_bias;
      std::vector<float> dx(x.size());
      cpu::group_norm_backward(dy.data(), x.data(), mean.data(), invstd.data(),
                               with_weight ? weight.data() : nullptr, k.shape(), dx.data(),
                               with_grads ? grad_weight.data() : nullptr,
                               with_grads ? grad_bias.data() : nullptr);
      const std::vector<float> dx_gpu = dx_d.to_vector();
      if ((k.c / k.g) * k.s == 1) {
        // Rows of one value: xhat = 0 and dx = invstd gamma dy - invstd gamma dy = 0 exactly;
        // both kernels return the rounding of that difference (invstd = 1/sqrt(eps) amplifies
        // it), so only its size is checked: a few fp32 roundings of invstd |gamma dy|.
        for (int64_t i = 0; i < k.numel(); ++i) {
          const double gamma = with_weight ? weight[i % k.c] : 1.0;
          EXPECT_LE(std::fabs(dx_gpu[i]),
                    1e-6 * invstd[i / (k.c / k.g)] * std::fabs(gamma * dy[i]) + 1e-7)
              << "dx at " << i;
        }
      } else {
        expect_close_rel(dx_gpu, dx, kRtol, "dx");
      }

      // Parameter gradients: before + sum over (n, s), compared as sums.
      std::vector<double> weight_magnitude(k.c), bias_magnitude(k.c);
      for (int64_t c = 0; c < k.c; ++c) {
        weight_magnitude[c] = std::fabs(grad_weight_before[c]);
        bias_magnitude[c] = std::fabs(grad_bias_before[c]);
        for (int64_t n = 0; n < k.n; ++n) {
          const int64_t row = n * k.g + c / (k.c / k.g);
          for (int64_t s = 0; s < k.s; ++s) {
            const std::size_t i = static_cast<std::size_t>((n * k.c + c) * k.s + s);
            bias_magnitude[c] += std::fabs(dy[i]);
            weight_magnitude[c] += std::fabs(dy[i] * (x[i] - mean[row]) * invstd[row]);
          }
        }
      }
      std::vector<double> weight_atols(k.c), bias_atols(k.c);
      for (int64_t c = 0; c < k.c; ++c) {
        weight_atols[c] = 1e-6 * weight_magnitude[c] + 1e-7;
        bias_atols[c] = 1e-6 * bias_magnitude[c] + 1e-7;
      }
      expect_close(grad_weight_d.to_vector(), grad_weight, kRtol, weight_atols, "grad_weight");
      expect_close(grad_bias_d.to_vector(), grad_bias, kRtol, bias_atols, "grad_bias");
    }
  }
}

TEST(GroupNormCudaTest, InstanceNormRunningStatsMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t batch = 5, channels = 11, spatial = 9;
  const std::vector<float> mean = random_values(batch * channels, 1, 1.0f, 0.2f);
  std::vector<float> invstd = random_values(batch * channels, 2, 0.3f, 1.0f);
  for (auto& r : invstd) r = std::fabs(r) + 0.3f;
  std::vector<float> running_mean = random_values(channels, 3, 0.5f, 0.0f);
  std::vector<float> running_var = random_values(channels, 4, 0.2f, 1.0f);
  for (auto& v : running_var) v = std::fabs(v) + 0.1f;

  const Tensor mean_d = on_device(mean), invstd_d = on_device(invstd);
  Tensor running_mean_d = on_device(running_mean), running_var_d = on_device(running_var);
  cuda::instance_norm_update_running_stats(mean_d.data(), invstd_d.data(), batch, channels, spatial,
                                           kEps, 0.1, running_mean_d.data(), running_var_d.data());
  cpu::instance_norm_update_running_stats(mean.data(), invstd.data(), batch, channels, spatial,
                                          kEps, 0.1, running_mean.data(), running_var.data());
  expect_close_rel(running_mean_d.to_vector(), running_mean, 1e-6, "running_mean");
  expect_close_rel(running_var_d.to_vector(), running_var, 1e-6, "running_var");
}

}  // namespace
}  // namespace syncbn
