// cuda::sgd_update against cpu::sgd_update: every variant (plain, momentum, dampening, Nesterov,
// weight decay) over several steps, sizes around the vector width, misaligned pointers.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cpu/sgd.h"
#include "cuda/sgd.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close_rel;
using testing::on_device;
using testing::random_values;

struct Variant {
  float lr, weight_decay, momentum, dampening;
  bool nesterov;
};

TEST(SgdCudaTest, EveryVariantMatchesCpuOverSeveralSteps) {
  SYNCBN_REQUIRE_CUDA();
  const Variant variants[] = {
      {0.1f, 0.0f, 0.0f, 0.0f, false},  {0.05f, 1e-4f, 0.0f, 0.0f, false},
      {0.1f, 0.0f, 0.9f, 0.0f, false},  {0.1f, 5e-4f, 0.9f, 0.1f, false},
      {0.02f, 1e-4f, 0.9f, 0.0f, true}, {0.3f, 0.0f, 0.5f, 0.0f, true},
  };
  uint64_t seed = 1;
  for (const Variant& v : variants) {
    for (int64_t n : {0, 1, 3, 4, 5, 1027, 65537}) {
      for (int64_t offset : {0, 1}) {
        std::vector<float> param = random_values(n, seed += 7);
        std::vector<float> buffer(static_cast<std::size_t>(n), 0.0f);
        Tensor param_dev = on_device(param, offset);
        // Garbage in the buffer: the first step must overwrite it without reading it.
        Tensor buffer_dev =
            on_device(std::vector<float>(static_cast<std::size_t>(n), 1e30f), offset);
        const bool momentum = v.momentum != 0.0f;
        for (int step = 0; step < 4; ++step) {
          const auto grad = random_values(n, seed + 100 + step);
          Tensor grad_dev = on_device(grad, offset);
          cpu::sgd_update(param.data(), grad.data(), momentum ? buffer.data() : nullptr, n, v.lr,
                          v.weight_decay, v.momentum, v.dampening, v.nesterov, step == 0);
          cuda::sgd_update(param_dev.data(), grad_dev.data(),
                           momentum ? buffer_dev.data() : nullptr, n, v.lr, v.weight_decay,
                           v.momentum, v.dampening, v.nesterov, step == 0);
        }
        const std::string what = "lr=" + std::to_string(v.lr) +
                                 " wd=" + std::to_string(v.weight_decay) +
                                 " momentum=" + std::to_string(v.momentum) +
                                 " dampening=" + std::to_string(v.dampening) +
                                 " nesterov=" + std::to_string(v.nesterov) +
                                 " n=" + std::to_string(n) + " offset=" + std::to_string(offset);
        expect_close_rel(param_dev.to_vector(), param, 1e-5, what + " param");
        if (momentum) expect_close_rel(buffer_dev.to_vector(), buffer, 1e-5, what + " buffer");
      }
    }
  }
}

TEST(SgdCudaTest, PlainSgdNeitherReadsNorWritesTheBuffer) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t n = 37;
  std::vector<float> param = random_values(n, 3);
  const auto grad = random_values(n, 4);
  Tensor param_dev = on_device(param, 0), grad_dev = on_device(grad, 0);
  cpu::sgd_update(param.data(), grad.data(), nullptr, n, 0.1f, 1e-3f, 0.0f, 0.0f, false, true);
  cuda::sgd_update(param_dev.data(), grad_dev.data(), nullptr, n, 0.1f, 1e-3f, 0.0f, 0.0f, false,
                   true);
  expect_close_rel(param_dev.to_vector(), param, 1e-5, "momentum 0, null buffer");
}

}  // namespace
}  // namespace syncbn
