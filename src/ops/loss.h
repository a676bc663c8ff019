#pragma once
// Softmax cross-entropy on tensors (see cpu/loss.h for the math).
#include <cstdint>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::ops {

struct CrossEntropyForward {
  double loss_sum = 0.0;  // sum over the batch of -log softmax(logits)[label]
  int64_t correct = 0;    // rows whose first argmax is the label
};

// logits (N, K); labels: N values in [0, K) (else syncbn::Error naming the label and K).
// (Re)allocates and fills probabilities (N, K) = softmax(logits) and device_labels (N int32
// values on the logits' device) for softmax_cross_entropy_backward.
CrossEntropyForward softmax_cross_entropy_forward(const Tensor& logits,
                                                  const std::vector<int32_t>& labels,
                                                  Tensor& probabilities, Tensor& device_labels);

// dlogits = scale * (probabilities - onehot(labels)).
Tensor softmax_cross_entropy_backward(const Tensor& probabilities, const Tensor& device_labels,
                                      float scale);

}  // namespace syncbn::ops
