#include "syncbn/nn/dropout.h"

#include <sstream>

#include "ops/elementwise.h"
#include "syncbn/error.h"

namespace syncbn::nn {

Dropout::Dropout(float p, uint64_t seed) : p_(p), generator_(seed) {
  SYNCBN_CHECK(p >= 0.0f && p <= 1.0f, "Dropout: probability must be in [0, 1], got ", p);
}

std::string Dropout::describe() const {
  std::ostringstream out;
  out << "p=" << p_ << ", inplace=False";
  return out.str();
}

void Dropout::skip_masks(int64_t forwards) {
  if (p_ == 0.0f || p_ == 1.0f) return;  // these draw nothing (forward_impl)
  for (int64_t i = 0; i < forwards; ++i) generator_.next_u64();
}

Tensor Dropout::forward_impl(const Tensor& x) {
  input_shape_ = x.shape();
  if (!is_training() || p_ == 0.0f) {
    applied_ = Applied::kIdentity;
    return x;
  }
  if (p_ == 1.0f) {
    applied_ = Applied::kZero;
    return Tensor::zeros(x.shape(), x.device());
  }
  applied_ = Applied::kMask;
  return ops::dropout_forward(x, p_, generator_.next_u64(), mask_);
}

Tensor Dropout::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(applied_ != Applied::kNone, "Dropout: backward called before forward");
  SYNCBN_CHECK(dy.shape() == input_shape_, "Dropout backward: gradient ", shape_str(dy.shape()),
               " does not match the output ", shape_str(input_shape_));
  switch (applied_) {
    case Applied::kIdentity:
      return dy;
    case Applied::kZero:
      return Tensor::zeros(dy.shape(), dy.device());
    default:
      return ops::multiply(dy, mask_);
  }
}

}  // namespace syncbn::nn
