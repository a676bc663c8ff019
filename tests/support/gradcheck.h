#pragma once
// Finite-difference checks of a module's explicit backward.
//
// For a random projection w, L(x, theta) = sum(forward(x) * w); then dL/dy = w, and backward(w)
// must give dL/dx and dL/dtheta. Each is compared with the central difference
// (L(v + h) - L(v - h)) / 2h, evaluated in double from float forwards.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "support/close.h"
#include "support/random.h"
#include "syncbn/nn/module.h"
#include "syncbn/tensor.h"

namespace syncbn::testing {

inline double projected_sum(const Tensor& y, const Tensor& w) {
  double total = 0.0;
  const float* a = y.data();
  const float* b = w.data();
  for (int64_t i = 0; i < y.numel(); ++i) total += static_cast<double>(a[i]) * b[i];
  return total;
}

// Checks dx and every parameter gradient of `module` at input x against central differences.
// The module must be deterministic across forward calls (dropout off, BN in a fixed mode:
// note that BN in training mode updates running stats on every forward, which does not affect
// its output).
inline void check_gradients(nn::Module& module, const Tensor& x_in, double h = 1e-2,
                            double rtol = 2e-2, double atol = 2e-3, uint64_t seed = 42) {
  Tensor x = x_in.clone();
  Tensor y = module.forward(x);
  Tensor w = random_tensor(y.shape(), seed);
  module.zero_grad();
  Tensor dx = module.backward(w);
  ASSERT_EQ(dx.shape(), x.shape());

  auto numeric = [&](float* value) {
    const float saved = *value;
    *value = static_cast<float>(saved + h);
    const double plus = projected_sum(module.forward(x), w);
    *value = static_cast<float>(saved - h);
    const double minus = projected_sum(module.forward(x), w);
    *value = saved;
    return (plus - minus) / (2 * h);
  };

  std::vector<double> expected_dx(static_cast<std::size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) expected_dx[i] = numeric(x.data() + i);
  expect_close(dx.to_vector(), expected_dx, rtol, atol, module.type_name() + " dx");

  for (auto& [name, param] : module.named_parameters()) {
    std::vector<double> expected(static_cast<std::size_t>(param->value.numel()));
    for (int64_t i = 0; i < param->value.numel(); ++i)
      expected[i] = numeric(param->value.data() + i);
    expect_close(param->grad.to_vector(), expected, rtol, atol, module.type_name() + " " + name);
  }
}

}  // namespace syncbn::testing
