#include "syncbn/nn/conv2d.h"

#include <cmath>
#include <sstream>

#include "ops/conv.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/random.h"

namespace syncbn::nn {

Conv2d::Conv2d(const Conv2dOptions& options, uint64_t seed) : options_(options) {
  const int64_t in = options.in_channels(), out = options.out_channels();
  const int64_t k = options.kernel_size();
  SYNCBN_CHECK(in > 0 && out > 0 && k > 0,
               "Conv2d: channels and kernel size must be positive, got ", in, ", ", out,
               ", kernel ", k);
  SYNCBN_CHECK(options.stride() > 0 && options.padding() >= 0, "Conv2d: stride must be positive ",
               "and padding non-negative, got stride ", options.stride(), ", padding ",
               options.padding());
  // PyTorch: kaiming_uniform_(a=sqrt(5)) on the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) on
  // the bias; both bounds come to 1/sqrt(fan_in) with fan_in = in * k * k.
  Generator generator(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(in * k * k));
  weight_ = register_parameter("weight", uniform_tensor({out, in, k, k}, bound, generator),
                               /*is_norm_or_bias=*/false);
  if (options.bias()) {
    bias_ = register_parameter("bias", uniform_tensor({out}, bound, generator),
                               /*is_norm_or_bias=*/true);
  }
}

std::string Conv2d::describe() const {
  std::ostringstream out;
  const auto pair = [&out](int64_t v) -> std::ostream& {
    return out << "(" << v << ", " << v << ")";
  };
  out << options_.in_channels() << ", " << options_.out_channels() << ", kernel_size=";
  pair(options_.kernel_size()) << ", stride=";
  pair(options_.stride());
  if (options_.padding() != 0) {
    out << ", padding=";
    pair(options_.padding());
  }
  if (!options_.bias()) out << ", bias=False";
  return out.str();
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  Tensor y = ops::conv2d_forward(x, weight_->value, bias_ ? bias_->value : Tensor(),
                                 options_.stride(), options_.padding(), workspace_);
  input_ = x;
  return y;
}

Tensor Conv2d::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(input_.defined(), "Conv2d: backward called before forward");
  return ops::conv2d_backward(input_, dy, weight_->value, options_.stride(), options_.padding(),
                              workspace_, weight_->grad, bias_ ? &bias_->grad : nullptr);
}

}  // namespace syncbn::nn
