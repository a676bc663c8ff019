// BatchNorm2d on a CUDA device against the same module on the CPU: outputs, running statistics,
// dx and parameter gradients over a few training steps (the shift K = running_mean changes from
// step to step), then evaluation. Needs every op group's CUDA kernels (the module path also runs
// elementwise copies and fills).
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close;
using testing::expect_close_rel;
using testing::random_values;

constexpr double kRtol = 1e-5;

Tensor input(const Shape& shape, const std::vector<float>& values, bool channels_last,
             Device device) {
  Tensor t = Tensor::from_vector(shape, values, device);
  if (channels_last) t.set_memory_format(MemoryFormat::kChannelsLast);
  return t;
}

TEST(BatchNormModuleCudaTest, BatchNorm2dOnCudaMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t n = 6, c = 12, h = 7, w = 9;
  const Shape shape = {n, c, h, w};
  uint64_t seed = 77;
  for (bool channels_last : {false, true}) {
    for (bool cumulative : {false, true}) {
      SCOPED_TRACE(std::string(channels_last ? "channels-last" : "NCHW") +
                   (cumulative ? " momentum None" : " momentum 0.1"));
      nn::BatchNormOptions options(c);
      if (cumulative) options.momentum(std::nullopt);
      nn::BatchNorm2d cpu_bn(options), gpu_bn(options);
      const std::vector<float> weight = random_values(c, ++seed, 0.5f, 1.0f);
      const std::vector<float> bias = random_values(c, ++seed, 0.5f, 0.0f);
      for (nn::BatchNorm2d* bn : {&cpu_bn, &gpu_bn}) {
        bn->weight()->value.copy_from(Tensor::from_vector({c}, weight));
        bn->bias()->value.copy_from(Tensor::from_vector({c}, bias));
      }
      gpu_bn.to(Device::cuda(0));

      for (int step = 0; step < 3; ++step) {
        SCOPED_TRACE("step " + std::to_string(step));
        const std::vector<float> x = random_values(n * c * h * w, ++seed, 2.0f, 3.0f + step);
        const std::vector<float> dy = random_values(n * c * h * w, ++seed, 1.0f, 0.0f);
        const Tensor y_cpu = cpu_bn.forward(input(shape, x, channels_last, Device::cpu()));
        const Tensor y_gpu = gpu_bn.forward(input(shape, x, channels_last, Device::cuda(0)));
        ASSERT_TRUE(y_gpu.device().is_cuda());
        EXPECT_EQ(y_gpu.memory_format(), y_cpu.memory_format());
        // y = b (x - mean) + c: a last-bit difference of the float mean moves every y by
        // b ulp(mean), so y is compared relative to 5% of its largest value at least.
        expect_close_rel(y_gpu.to_vector(), y_cpu.to_vector(), kRtol, "y", 0.05);
        expect_close_rel(gpu_bn.running_mean().to_vector(), cpu_bn.running_mean().to_vector(),
                         kRtol, "running_mean");
        expect_close_rel(gpu_bn.running_var().to_vector(), cpu_bn.running_var().to_vector(), kRtol,
                         "running_var");
        expect_close_rel(gpu_bn.num_batches_tracked().to_vector(),
                         cpu_bn.num_batches_tracked().to_vector(), 0.0, "num_batches_tracked");

        const Tensor dx_cpu = cpu_bn.backward(input(shape, dy, channels_last, Device::cpu()));
        const Tensor dx_gpu = gpu_bn.backward(input(shape, dy, channels_last, Device::cuda(0)));
        expect_close_rel(dx_gpu.to_vector(), dx_cpu.to_vector(), kRtol, "dx");
        // dgamma and dbeta are sums over N*H*W values: compared within 1e-5 relative plus 1e-6
        // of the sum of |dy| (a bound on |dgamma| and |dbeta| per value, |xhat| being O(1)
        // here). Gradients accumulate over the steps, as in PyTorch without zero_grad.
        double sum_abs_dy = 0.0;
        for (float v : dy) sum_abs_dy += std::fabs(v);
        expect_close(gpu_bn.weight()->grad.to_vector(), cpu_bn.weight()->grad.to_vector(), kRtol,
                     1e-6 * (3.0 * sum_abs_dy * (step + 1)), "grad_weight");
        expect_close(gpu_bn.bias()->grad.to_vector(), cpu_bn.bias()->grad.to_vector(), kRtol,
                     1e-6 * (sum_abs_dy * (step + 1)), "grad_bias");
      }

      cpu_bn.eval();
      gpu_bn.eval();
      const std::vector<float> x = random_values(n * c * h * w, ++seed, 2.0f, 3.0f);
      const Tensor y_cpu = cpu_bn.forward(input(shape, x, channels_last, Device::cpu()));
      const Tensor y_gpu = gpu_bn.forward(input(shape, x, channels_last, Device::cuda(0)));
      expect_close_rel(y_gpu.to_vector(), y_cpu.to_vector(), kRtol, "eval y", 0.05);
    }
  }
}

}  // namespace
}  // namespace syncbn
