#include "cpu/sgd.h"

namespace syncbn::cpu {

namespace {

// Below this many elements the update is faster on one thread than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;

// The variant is chosen once per parameter, so the element loop has no branches.
template <bool kMomentum, bool kFirstStep, bool kNesterov>
void sgd_update_loop(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                     float weight_decay, float momentum, float dampening) {
  const float buffer_scale = 1.0f - dampening;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    float d = grad[i] + weight_decay * param[i];
    if constexpr (kMomentum) {
      float b;
      if constexpr (kFirstStep) {
        b = d;
      } else {
        b = momentum * momentum_buffer[i] + buffer_scale * d;
      }
      momentum_buffer[i] = b;
      if constexpr (kNesterov) {
        d = d + momentum * b;
      } else {
        d = b;
      }
    }
    param[i] -= lr * d;
  }
}

}  // namespace

void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float weight_decay, float momentum, float dampening, bool nesterov,
                bool first_step) {
  if (momentum == 0.0f) {
    sgd_update_loop<false, false, false>(param, grad, nullptr, n, lr, weight_decay, 0.0f, 0.0f);
  } else if (first_step) {
    if (nesterov) {
      sgd_update_loop<true, true, true>(param, grad, momentum_buffer, n, lr, weight_decay, momentum,
                                        dampening);
    } else {
      sgd_update_loop<true, true, false>(param, grad, momentum_buffer, n, lr, weight_decay,
                                         momentum, dampening);
    }
  } else if (nesterov) {
    sgd_update_loop<true, false, true>(param, grad, momentum_buffer, n, lr, weight_decay, momentum,
                                       dampening);
  } else {
    sgd_update_loop<true, false, false>(param, grad, momentum_buffer, n, lr, weight_decay, momentum,
                                        dampening);
  }
}

}  // namespace syncbn::cpu
