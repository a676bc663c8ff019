#include "syncbn/nn/activation.h"

#include "ops/elementwise.h"
#include "syncbn/error.h"

namespace syncbn::nn {

Tensor ReLU::forward_impl(const Tensor& x) {
  output_ = ops::relu_forward(x);
  return output_;
}

Tensor ReLU::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(output_.defined(), "ReLU: backward called before forward");
  return ops::relu_backward(output_, dy);
}

}  // namespace syncbn::nn
