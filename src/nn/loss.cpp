#include "syncbn/nn/loss.h"

#include "ops/loss.h"
#include "syncbn/error.h"

namespace syncbn::nn {

float CrossEntropyLoss::forward(const Tensor& logits, const std::vector<int32_t>& labels) {
  const ops::CrossEntropyForward result =
      ops::softmax_cross_entropy_forward(logits, labels, probabilities_, labels_);
  batch_ = logits.size(0);
  correct_ = result.correct;
  has_forward_ = true;
  return batch_ == 0 ? 0.0f : static_cast<float>(result.loss_sum / static_cast<double>(batch_));
}

Tensor CrossEntropyLoss::backward() {
  SYNCBN_CHECK(has_forward_, "CrossEntropyLoss: backward called before forward");
  // d(mean loss)/dlogits = (softmax - onehot) / N; N = 0 gives an empty gradient.
  const float scale = batch_ == 0 ? 0.0f : 1.0f / static_cast<float>(batch_);
  return ops::softmax_cross_entropy_backward(probabilities_, labels_, scale);
}

}  // namespace syncbn::nn
