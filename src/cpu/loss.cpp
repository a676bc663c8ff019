#include "cpu/loss.h"

#include <cmath>

namespace syncbn::cpu {

namespace {
// Below this many logits one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;
}  // namespace

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   float* probabilities, float* losses, float* hits) {
#pragma omp parallel for schedule(static) if (n * k >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * k;
    float* prob = probabilities + i * k;
    int64_t argmax = 0;
    for (int64_t j = 1; j < k; ++j) {
      if (row[j] > row[argmax]) argmax = j;
    }
    const float max = row[argmax];
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      prob[j] = std::exp(row[j] - max);
      sum += prob[j];
    }
    const float inverse_sum = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < k; ++j) prob[j] *= inverse_sum;
    const int32_t label = labels[i];
    losses[i] = static_cast<float>(static_cast<double>(max) + std::log(sum) - row[label]);
    hits[i] = argmax == label ? 1.0f : 0.0f;
  }
}

void softmax_cross_entropy_backward(const float* probabilities, const int32_t* labels, int64_t n,
                                    int64_t k, float scale, float* dlogits) {
#pragma omp parallel for schedule(static) if (n * k >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const float* prob = probabilities + i * k;
    float* grad = dlogits + i * k;
    for (int64_t j = 0; j < k; ++j) grad[j] = scale * prob[j];
    grad[labels[i]] -= scale;
  }
}

}  // namespace syncbn::cpu
