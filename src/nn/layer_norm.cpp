#include "syncbn/nn/layer_norm.h"

#include "ops/group_norm.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn::nn {

LayerNorm::LayerNorm(std::vector<int64_t> normalized_shape, double eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  SYNCBN_CHECK(!normalized_shape_.empty(), "LayerNorm: normalized_shape must not be empty");
  for (int64_t d : normalized_shape_) {
    SYNCBN_CHECK(d > 0, "LayerNorm: normalized_shape ", shape_str(normalized_shape_),
                 " must have positive sizes");
  }
  SYNCBN_CHECK(eps > 0, "LayerNorm: eps must be positive, got ", eps);
  normalized_numel_ = shape_numel(normalized_shape_);
  if (elementwise_affine) {
    weight_ = register_parameter("weight", Tensor::full(normalized_shape_, 1.0f), true);
    bias_ = register_parameter("bias", Tensor::zeros(normalized_shape_), true);
  }
}

std::string LayerNorm::describe() const {
  // Python prints the shape as a tuple: (4,) or (3, 4).
  std::string shape = "(";
  for (std::size_t i = 0; i < normalized_shape_.size(); ++i) {
    shape += (i ? ", " : "") + std::to_string(normalized_shape_[i]);
  }
  shape += normalized_shape_.size() == 1 ? ",)" : ")";
  return shape + ", eps=" + python_float_repr(eps_) +
         ", elementwise_affine=" + (elementwise_affine() ? "True" : "False");
}

void LayerNorm::check_input(const Tensor& x) const {
  const std::size_t k = normalized_shape_.size();
  bool matches = x.shape().size() >= k;
  for (std::size_t i = 0; matches && i < k; ++i) {
    matches = x.shape()[x.shape().size() - k + i] == normalized_shape_[i];
  }
  SYNCBN_CHECK(matches, "LayerNorm: given normalized_shape=", shape_str(normalized_shape_),
               ", expected input with shape [*, ", shape_str(normalized_shape_).substr(1),
               ", but got input of size ", shape_str(x.shape()));
}

Tensor LayerNorm::forward_impl(const Tensor& x) {
  check_input(x);
  saved_input_ = x;
  return ops::layer_norm_forward(x, normalized_numel_, weight_ ? weight_->value : Tensor(),
                                 bias_ ? bias_->value : Tensor(), eps_, saved_mean_, saved_invstd_);
}

Tensor LayerNorm::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(saved_input_.defined(), "LayerNorm: backward called before forward");
  return ops::layer_norm_backward(dy, saved_input_, normalized_numel_, saved_mean_, saved_invstd_,
                                  weight_ ? weight_->value : Tensor(),
                                  weight_ ? weight_->grad : Tensor(),
                                  bias_ ? bias_->grad : Tensor());
}

}  // namespace syncbn::nn
