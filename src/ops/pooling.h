#pragma once
// 2-D pooling on NCHW tensors (see cpu/pooling.h for the math).
#include <cstdint>

#include "syncbn/tensor.h"

namespace syncbn::ops {

// Window geometry shared by the pooling layers; PyTorch's rules: kernel > 0, stride > 0,
// 0 <= padding <= kernel / 2, output size (H + 2 padding - kernel) / stride + 1 >= 1.
struct Pool2dWindow {
  int64_t kernel, stride, padding;
};

// y = max over each window; `indices` (re)allocated to y's shape, holding the int32 positions
// of the maxima within their planes, for max_pool2d_backward.
Tensor max_pool2d_forward(const Tensor& x, const Pool2dWindow& window, Tensor& indices);
Tensor max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Shape& input_shape);

Tensor avg_pool2d_forward(const Tensor& x, const Pool2dWindow& window);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& input_shape, const Pool2dWindow& window);

// (N, C, H, W) -> (N, C): the mean over H * W.
Tensor global_avg_pool2d_forward(const Tensor& x);
Tensor global_avg_pool2d_backward(const Tensor& dy, const Shape& input_shape);

}  // namespace syncbn::ops
