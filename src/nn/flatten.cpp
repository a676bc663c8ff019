#include "syncbn/nn/flatten.h"

#include "syncbn/error.h"

namespace syncbn::nn {

Tensor Flatten::forward_impl(const Tensor& x) {
  SYNCBN_CHECK(x.ndim() >= 2, "Flatten: expected input (N, *) with at least 2 dimensions, got ",
               shape_str(x.shape()));
  input_shape_ = x.shape();
  int64_t features = 1;
  for (int d = 1; d < x.ndim(); ++d) features *= x.size(d);
  return x.reshape({x.size(0), features});
}

Tensor Flatten::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(!input_shape_.empty(), "Flatten: backward called before forward");
  SYNCBN_CHECK(
      dy.numel() == shape_numel(input_shape_) && dy.ndim() == 2 && dy.size(0) == input_shape_[0],
      "Flatten backward: gradient ", shape_str(dy.shape()), " does not match the output of input ",
      shape_str(input_shape_));
  return dy.reshape(input_shape_);
}

}  // namespace syncbn::nn
