#include "ops/pooling.h"

#include "cpu/pooling.h"
#include "ops/conv.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/pooling.h"
#endif

namespace syncbn::ops {

namespace {

// Output shape of a pooling window over x (N, C, H, W), checked as PyTorch does.
Shape pooled_shape(const char* op, const Shape& input, const Pool2dWindow& w) {
  SYNCBN_CHECK(input.size() == 4, op, ": expected input (N, C, H, W), got ", shape_str(input));
  SYNCBN_CHECK(w.kernel > 0 && w.stride > 0, op, ": kernel and stride must be positive, got ",
               w.kernel, " and ", w.stride);
  SYNCBN_CHECK(w.padding >= 0 && w.padding <= w.kernel / 2, op,
               ": padding should be at most half of the kernel size, got padding ", w.padding,
               " and kernel ", w.kernel);
  const int64_t out_height = conv_output_size(input[2], w.kernel, w.stride, w.padding);
  const int64_t out_width = conv_output_size(input[3], w.kernel, w.stride, w.padding);
  SYNCBN_CHECK(out_height > 0 && out_width > 0, op, ": input ", shape_str(input),
               " is too small for a ", w.kernel, "x", w.kernel, " window with padding ", w.padding);
  return {input[0], input[1], out_height, out_width};
}

// Max-pool indices are int32 values stored in a float tensor's memory (same size, never read
// as floats), so they live on the tensor's device like any other buffer.
int32_t* int32_data(Tensor& t) { return reinterpret_cast<int32_t*>(t.data()); }
const int32_t* int32_data(const Tensor& t) { return reinterpret_cast<const int32_t*>(t.data()); }

}  // namespace

Tensor max_pool2d_forward(const Tensor& x, const Pool2dWindow& window, Tensor& indices) {
  const Shape out_shape = pooled_shape("MaxPool2d", x.shape(), window);
  const Device device = detail::common_device("MaxPool2d", {&x});
  Tensor y = Tensor::empty(out_shape, device);
  if (!indices.defined() || indices.shape() != out_shape || indices.device() != device) {
    indices = Tensor::empty(out_shape, device);
  }
  SYNCBN_DISPATCH(device, max_pool2d_forward, x.data(), x.size(0) * x.size(1), x.size(2), x.size(3),
                  window.kernel, window.stride, window.padding, out_shape[2], out_shape[3],
                  y.data(), int32_data(indices));
  return y;
}

Tensor max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Shape& input_shape) {
  SYNCBN_CHECK(indices.defined() && dy.shape() == indices.shape(), "MaxPool2d backward: gradient ",
               shape_str(dy.shape()), " does not match the last forward's output ",
               indices.defined() ? shape_str(indices.shape()) : "(none: call forward first)");
  SYNCBN_CHECK(input_shape.size() == 4, "MaxPool2d backward: expected input (N, C, H, W), got ",
               shape_str(input_shape));
  const Device device = detail::common_device("MaxPool2d backward", {&dy, &indices});
  Tensor dx = Tensor::empty(input_shape, device);
  SYNCBN_DISPATCH(device, max_pool2d_backward, dy.data(), int32_data(indices),
                  input_shape[0] * input_shape[1], input_shape[2], input_shape[3], dy.size(2),
                  dy.size(3), dx.data());
  return dx;
}

Tensor avg_pool2d_forward(const Tensor& x, const Pool2dWindow& window) {
  const Shape out_shape = pooled_shape("AvgPool2d", x.shape(), window);
  const Device device = detail::common_device("AvgPool2d", {&x});
  Tensor y = Tensor::empty(out_shape, device);
  SYNCBN_DISPATCH(device, avg_pool2d_forward, x.data(), x.size(0) * x.size(1), x.size(2), x.size(3),
                  window.kernel, window.stride, window.padding, out_shape[2], out_shape[3],
                  y.data());
  return y;
}

Tensor avg_pool2d_backward(const Tensor& dy, const Shape& input_shape, const Pool2dWindow& window) {
  const Shape out_shape = pooled_shape("AvgPool2d backward", input_shape, window);
  SYNCBN_CHECK(dy.shape() == out_shape, "AvgPool2d backward: gradient ", shape_str(dy.shape()),
               " does not match the output ", shape_str(out_shape));
  const Device device = detail::common_device("AvgPool2d backward", {&dy});
  Tensor dx = Tensor::empty(input_shape, device);
  SYNCBN_DISPATCH(device, avg_pool2d_backward, dy.data(), input_shape[0] * input_shape[1],
                  input_shape[2], input_shape[3], window.kernel, window.stride, window.padding,
                  out_shape[2], out_shape[3], dx.data());
  return dx;
}

Tensor global_avg_pool2d_forward(const Tensor& x) {
  SYNCBN_CHECK(x.ndim() == 4, "AdaptiveAvgPool2d: expected input (N, C, H, W), got ",
               shape_str(x.shape()));
  SYNCBN_CHECK(x.size(2) > 0 && x.size(3) > 0, "AdaptiveAvgPool2d: input ", shape_str(x.shape()),
               " has an empty plane to average");
  const Device device = detail::common_device("AdaptiveAvgPool2d", {&x});
  Tensor y = Tensor::empty({x.size(0), x.size(1)}, device);
  SYNCBN_DISPATCH(device, global_avg_pool2d_forward, x.data(), x.size(0) * x.size(1),
                  x.size(2) * x.size(3), y.data());
  return y;
}

Tensor global_avg_pool2d_backward(const Tensor& dy, const Shape& input_shape) {
  SYNCBN_CHECK(input_shape.size() == 4 && dy.shape() == Shape({input_shape[0], input_shape[1]}),
               "AdaptiveAvgPool2d backward: gradient ", shape_str(dy.shape()),
               " does not match the output of input ", shape_str(input_shape));
  const Device device = detail::common_device("AdaptiveAvgPool2d backward", {&dy});
  Tensor dx = Tensor::empty(input_shape, device);
  SYNCBN_DISPATCH(device, global_avg_pool2d_backward, dy.data(), input_shape[0] * input_shape[1],
                  input_shape[2] * input_shape[3], dx.data());
  return dx;
}

}  // namespace syncbn::ops
