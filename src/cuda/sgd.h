#pragma once
// The fused SGD update on the GPU (see cpu/sgd.h for the math). Device pointers; the result is
// bit-identical to cpu::sgd_update (same operations, no fused multiply-add). Included by
// g++-compiled ops files: no CUDA types here.
#include <cstdint>

namespace syncbn::cuda {

void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float weight_decay, float momentum, float dampening, bool nesterov,
                bool first_step);

}  // namespace syncbn::cuda
