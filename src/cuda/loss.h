#pragma once
// Softmax cross-entropy on the GPU (see cpu/loss.h for the math). Device pointers; labels are
// int32 device memory in [0, K) (checked by the caller). Included by g++-compiled ops files.
#include <cstdint>

namespace syncbn::cuda {

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   float* probabilities, float* losses, float* hits);

void softmax_cross_entropy_backward(const float* probabilities, const int32_t* labels, int64_t n,
                                    int64_t k, float scale, float* dlogits);

}  // namespace syncbn::cuda
