#pragma once
// CrossEntropyLoss (torch.nn.CrossEntropyLoss, mean reduction): the softmax cross-entropy of
// logits (N, K) against integer labels, averaged over the batch. Not a Module: it ends the
// backward chain.
#include <cstdint>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::nn {

class CrossEntropyLoss {
 public:
  // loss = (1/N) sum_i [ log sum_j exp(logits[i][j]) - logits[i][labels[i]] ], computed with
  // the maximum subtracted (log-sum-exp), so large logits do not overflow. Labels must be in
  // [0, K) (else syncbn::Error). An empty batch (N = 0) gives 0.
  float forward(const Tensor& logits, const std::vector<int32_t>& labels);
  // dlogits = (softmax(logits) - onehot(labels)) / N for the last forward.
  Tensor backward();
  // The number of samples of the last forward whose (first) argmax is the label.
  int64_t correct() const { return correct_; }

 private:
  Tensor probabilities_;  // softmax of the last forward's logits
  Tensor labels_;         // its labels, as int32 on the logits' device
  int64_t batch_ = 0;
  int64_t correct_ = 0;
  bool has_forward_ = false;
};

}  // namespace syncbn::nn
