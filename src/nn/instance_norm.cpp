#include "syncbn/nn/instance_norm.h"

#include "ops/batch_norm.h"
#include "ops/group_norm.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn::nn {

InstanceNorm2d::InstanceNorm2d(int64_t num_features, double eps, double momentum, bool affine,
                               bool track_running_stats)
    : num_features_(num_features),
      eps_(eps),
      momentum_(momentum),
      track_running_stats_(track_running_stats) {
  SYNCBN_CHECK(num_features > 0, "InstanceNorm2d: num_features must be positive, got ",
               num_features);
  SYNCBN_CHECK(eps > 0, "InstanceNorm2d: eps must be positive, got ", eps);
  if (affine) {
    weight_ = register_parameter("weight", Tensor::full({num_features}, 1.0f), true);
    bias_ = register_parameter("bias", Tensor::zeros({num_features}), true);
  }
  if (track_running_stats) {
    register_buffer("running_mean", Tensor::zeros({num_features}));
    register_buffer("running_var", Tensor::full({num_features}, 1.0f));
    register_buffer("num_batches_tracked", Tensor::zeros({1}));
  }
}

std::string InstanceNorm2d::describe() const {
  return std::to_string(num_features_) + ", eps=" + python_float_repr(eps_) +
         ", momentum=" + python_float_repr(momentum_) +
         ", affine=" + (affine() ? "True" : "False") +
         ", track_running_stats=" + (track_running_stats_ ? "True" : "False");
}

Tensor InstanceNorm2d::running_mean() {
  return track_running_stats_ ? own_buffer("running_mean") : Tensor();
}

Tensor InstanceNorm2d::running_var() {
  return track_running_stats_ ? own_buffer("running_var") : Tensor();
}

Tensor InstanceNorm2d::batched(const Tensor& x) const {
  return x.ndim() == 3 ? x.reshape({1, x.size(0), x.size(1), x.size(2)}) : x;
}

Tensor InstanceNorm2d::forward_impl(const Tensor& input) {
  SYNCBN_CHECK(input.ndim() == 3 || input.ndim() == 4,
               "InstanceNorm2d: expected 3D or 4D input (got ", input.ndim(), "D input of shape ",
               shape_str(input.shape()), ")");
  const Tensor x = batched(input);
  // Like torch, a channel count that differs from num_features only matters when parameters or
  // running statistics are per channel.
  SYNCBN_CHECK(x.size(1) == num_features_ || (!affine() && !track_running_stats_),
               "InstanceNorm2d(", num_features_,
               "): expected input's size at dim=", input.ndim() - 3, " to match num_features (",
               num_features_, "), but got input of shape ", shape_str(input.shape()));
  const Tensor weight = weight_ ? weight_->value : Tensor();
  const Tensor bias = bias_ ? bias_->value : Tensor();
  saved_input_ = x;
  saved_instance_stats_ = is_training() || !track_running_stats_;
  Tensor y;
  if (saved_instance_stats_) {
    SYNCBN_CHECK(x.size(2) * x.size(3) > 1,
                 "Expected more than 1 spatial element when training, got input size ",
                 shape_str(input.shape()));
    y = ops::group_norm_forward(x, weight, bias, /*groups=*/x.size(1), eps_, saved_mean_,
                                saved_invstd_);
    if (is_training() && track_running_stats_) {
      ops::instance_norm_update_running_stats(x, saved_mean_, saved_invstd_, eps_, momentum_,
                                              own_buffer("running_mean"),
                                              own_buffer("running_var"));
    }
  } else {
    // Running statistics: per channel, the same for every sample, as in BatchNorm evaluation.
    if (!saved_mean_.defined() || saved_mean_.numel() != num_features_ ||
        saved_mean_.device() != x.device()) {
      saved_mean_ = Tensor::empty({num_features_}, x.device());
      saved_invstd_ = Tensor::empty({num_features_}, x.device());
    }
    saved_mean_.copy_from(own_buffer("running_mean"));
    ops::batch_norm_invstd(own_buffer("running_var"), eps_, saved_invstd_);
    y = ops::batch_norm_elemt(x, saved_mean_, saved_invstd_, weight, bias);
  }
  return y.reshape(input.shape());
}

Tensor InstanceNorm2d::backward_impl(const Tensor& dy_in) {
  SYNCBN_CHECK(saved_input_.defined(), "InstanceNorm2d: backward called before forward");
  SYNCBN_CHECK(dy_in.numel() == saved_input_.numel(), "InstanceNorm2d: gradient ",
               shape_str(dy_in.shape()), " does not match the forward input");
  const Tensor dy = dy_in.reshape(saved_input_.shape());
  const Tensor weight = weight_ ? weight_->value : Tensor();
  const Tensor grad_weight = weight_ ? weight_->grad : Tensor();
  const Tensor grad_bias = bias_ ? bias_->grad : Tensor();
  Tensor dx;
  if (saved_instance_stats_) {
    dx = ops::group_norm_backward(dy, saved_input_, saved_mean_, saved_invstd_, weight,
                                  /*groups=*/saved_input_.size(1), grad_weight, grad_bias);
  } else {
    if (weight_) {
      ops::batch_norm_backward_reduce(dy, saved_input_, saved_mean_, saved_invstd_, nullptr,
                                      grad_weight, grad_bias);
    }
    dx = ops::batch_norm_backward_elemt(dy, saved_input_, saved_mean_, saved_invstd_, weight,
                                        nullptr);
  }
  return dx.reshape(dy_in.shape());
}

}  // namespace syncbn::nn
