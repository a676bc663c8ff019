#include "syncbn/nn/pooling.h"

#include <sstream>

#include "ops/pooling.h"
#include "syncbn/error.h"

namespace syncbn::nn {

namespace {
void check_window(const char* layer, int64_t kernel, int64_t stride, int64_t padding) {
  SYNCBN_CHECK(kernel > 0 && stride > 0, layer, ": kernel and stride must be positive, got ",
               kernel, " and ", stride);
  SYNCBN_CHECK(padding >= 0 && padding <= kernel / 2, layer,
               ": padding should be at most half of the kernel size, got padding ", padding,
               " and kernel ", kernel);
}
}  // namespace

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : kernel_(kernel), stride_(stride == -1 ? kernel : stride), padding_(padding) {
  check_window("MaxPool2d", kernel_, stride_, padding_);
}

std::string MaxPool2d::describe() const {
  std::ostringstream out;
  out << "kernel_size=" << kernel_ << ", stride=" << stride_ << ", padding=" << padding_
      << ", dilation=1, ceil_mode=False";
  return out.str();
}

Tensor MaxPool2d::forward_impl(const Tensor& x) {
  Tensor y = ops::max_pool2d_forward(x, {kernel_, stride_, padding_}, indices_);
  input_shape_ = x.shape();
  return y;
}

Tensor MaxPool2d::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(!input_shape_.empty(), "MaxPool2d: backward called before forward");
  return ops::max_pool2d_backward(dy, indices_, input_shape_);
}

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : kernel_(kernel), stride_(stride == -1 ? kernel : stride), padding_(padding) {
  check_window("AvgPool2d", kernel_, stride_, padding_);
}

std::string AvgPool2d::describe() const {
  std::ostringstream out;
  out << "kernel_size=" << kernel_ << ", stride=" << stride_ << ", padding=" << padding_;
  return out.str();
}

Tensor AvgPool2d::forward_impl(const Tensor& x) {
  Tensor y = ops::avg_pool2d_forward(x, {kernel_, stride_, padding_});
  input_shape_ = x.shape();
  return y;
}

Tensor AvgPool2d::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(!input_shape_.empty(), "AvgPool2d: backward called before forward");
  return ops::avg_pool2d_backward(dy, input_shape_, {kernel_, stride_, padding_});
}

Tensor GlobalAvgPool2d::forward_impl(const Tensor& x) {
  Tensor y = ops::global_avg_pool2d_forward(x);
  input_shape_ = x.shape();
  return y;
}

Tensor GlobalAvgPool2d::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(!input_shape_.empty(), "AdaptiveAvgPool2d: backward called before forward");
  return ops::global_avg_pool2d_backward(dy, input_shape_);
}

}  // namespace syncbn::nn
