#pragma once
// Shared helpers of the GPU tests: skip without a device, random host data, and comparison of
// a CUDA result with the CPU kernel's within a relative tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "syncbn/device.h"
#include "syncbn/random.h"
#include "syncbn/tensor.h"

// First statement of every GPU test: CI has no GPU, so these skip there with the reason.
#define SYNCBN_REQUIRE_CUDA()                                                 \
  do {                                                                        \
    if (::syncbn::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace syncbn::testing {

inline std::vector<float> random_values(int64_t n, uint64_t seed, float std = 1.0f,
                                        float mean = 0.0f) {
  Generator gen(seed);
  std::vector<float> values(static_cast<std::size_t>(n));
  for (auto& v : values) v = gen.normal(mean, std);
  return values;
}

// A 1-D tensor on the first GPU holding `values`.
inline Tensor on_device(const std::vector<float>& values) {
  return Tensor::from_vector({static_cast<int64_t>(values.size())}, values, Device::cuda(0));
}

// |actual - expected| <= rtol * max(|expected|, floor * max|expected|) + 1e-7, element-wise.
inline void expect_close_rel(const std::vector<float>& actual, const std::vector<float>& expected,
                             double rtol, const std::string& what, double floor = 1e-3) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double scale = 0;
  for (float v : expected) scale = std::max(scale, std::fabs(double(v)));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    ASSERT_NEAR(actual[i], expected[i],
                rtol * std::max(std::fabs(double(expected[i])), floor * scale) + 1e-7)
        << what << " at " << i;
  }
}

}  // namespace syncbn::testing
