#pragma once
// Softmax cross-entropy over rows of logits (N, K), labels in [0, K) (checked by the caller).
#include <cstdint>

namespace syncbn::cpu {

// For each row i, with m = max_j logits[i][j] (log-sum-exp shifted by the maximum):
//   probabilities[i][j] = exp(logits[i][j] - m) / sum_j exp(logits[i][j] - m)
//   losses[i] = m + log(sum_j exp(logits[i][j] - m)) - logits[i][labels[i]]
//   hits[i] = 1 if the first argmax of row i is labels[i], else 0
void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   float* probabilities, float* losses, float* hits);

// dlogits[i][j] = scale * (probabilities[i][j] - [j == labels[i]]); scale = 1 / N for the mean.
void softmax_cross_entropy_backward(const float* probabilities, const int32_t* labels, int64_t n,
                                    int64_t k, float scale, float* dlogits);

}  // namespace syncbn::cpu
