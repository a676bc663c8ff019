#include "syncbn/nn/linear.h"

#include <cmath>
#include <sstream>

#include "ops/blas.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/random.h"

namespace syncbn::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, uint64_t seed)
    : in_features_(in_features), out_features_(out_features) {
  SYNCBN_CHECK(in_features > 0 && out_features > 0,
               "Linear: in_features and out_features must be positive, got ", in_features, " and ",
               out_features);
  // PyTorch: kaiming_uniform_(a=sqrt(5)) on the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on
  // the bias; both bounds come to 1/sqrt(fan_in).
  Generator generator(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_features));
  weight_ =
      register_parameter("weight", uniform_tensor({out_features, in_features}, bound, generator),
                         /*is_norm_or_bias=*/false);
  if (bias) {
    bias_ = register_parameter("bias", uniform_tensor({out_features}, bound, generator),
                               /*is_norm_or_bias=*/true);
  }
}

std::string Linear::describe() const {
  std::ostringstream out;
  out << "in_features=" << in_features_ << ", out_features=" << out_features_
      << ", bias=" << (bias_ ? "True" : "False");
  return out.str();
}

Tensor Linear::forward_impl(const Tensor& x) {
  Tensor y = ops::linear_forward(x, weight_->value, bias_ ? bias_->value : Tensor());
  input_ = x;
  return y;
}

Tensor Linear::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(input_.defined(), "Linear: backward called before forward");
  return ops::linear_backward(input_, dy, weight_->value, weight_->grad,
                              bias_ ? &bias_->grad : nullptr);
}

}  // namespace syncbn::nn
