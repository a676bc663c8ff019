#include "syncbn/nn/group_norm.h"

#include "ops/group_norm.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn::nn {

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine)
    : num_groups_(num_groups), num_channels_(num_channels), eps_(eps) {
  SYNCBN_CHECK(num_groups > 0 && num_channels > 0,
               "GroupNorm: num_groups and num_channels must be positive, got ", num_groups, " and ",
               num_channels);
  SYNCBN_CHECK(num_channels % num_groups == 0,
               "GroupNorm: num_channels must be divisible by num_groups, got num_channels=",
               num_channels, " and num_groups=", num_groups);
  SYNCBN_CHECK(eps > 0, "GroupNorm: eps must be positive, got ", eps);
  if (affine) {
    weight_ = register_parameter("weight", Tensor::full({num_channels}, 1.0f), true);
    bias_ = register_parameter("bias", Tensor::zeros({num_channels}), true);
  }
}

std::string GroupNorm::describe() const {
  return std::to_string(num_groups_) + ", " + std::to_string(num_channels_) +
         ", eps=" + python_float_repr(eps_) + ", affine=" + (affine() ? "True" : "False");
}

Tensor GroupNorm::forward_impl(const Tensor& x) {
  SYNCBN_CHECK(x.ndim() >= 2 && x.size(1) == num_channels_, "GroupNorm(", num_groups_, ", ",
               num_channels_, "): expected input (N, ", num_channels_, ", *), got shape ",
               shape_str(x.shape()));
  saved_input_ = x;
  return ops::group_norm_forward(x, weight_ ? weight_->value : Tensor(),
                                 bias_ ? bias_->value : Tensor(), num_groups_, eps_, saved_mean_,
                                 saved_invstd_);
}

Tensor GroupNorm::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(saved_input_.defined(), "GroupNorm: backward called before forward");
  return ops::group_norm_backward(
      dy, saved_input_, saved_mean_, saved_invstd_, weight_ ? weight_->value : Tensor(),
      num_groups_, weight_ ? weight_->grad : Tensor(), bias_ ? bias_->grad : Tensor());
}

}  // namespace syncbn::nn
