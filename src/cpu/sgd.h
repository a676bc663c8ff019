#pragma once
// The SGD update kernel (torch.optim.SGD's arithmetic), fused into one pass per parameter.
#include <cstdint>

namespace syncbn::cpu {

// For each element i, with g = grad[i], p = param[i], b = momentum_buffer[i]:
//   d = g + weight_decay * p
//   momentum > 0:  b = d on the first step, else b = momentum * b + (1 - dampening) * d;
//                  d = nesterov ? d + momentum * b : b
//   p = p - lr * d
// momentum_buffer may be null when momentum == 0 (it is then neither read nor written).
void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float weight_decay, float momentum, float dampening, bool nesterov,
                bool first_step);

}  // namespace syncbn::cpu
