#pragma once
// 2-D convolution (cross-correlation, as torch.nn.Conv2d) on NCHW tensors (see cpu/conv.h).
#include <cstdint>

#include "syncbn/tensor.h"

namespace syncbn::ops {

// Output size of a convolution or pooling window along one dimension (floor mode).
int64_t conv_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding);

// y (N, O, Ho, Wo) = conv(x (N, C, H, W), weight (O, C, K, K)) + bias (O, or undefined).
// `workspace` is scratch memory the layer keeps between calls: (re)allocated here when too
// small, so a training step allocates only its outputs.
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t padding, Tensor& workspace);

// From the forward input x and dy (N, O, Ho, Wo): accumulates dweight += dL/dweight and (when
// dbias is not null) dbias += dL/dbias; returns dx = dL/dx.
Tensor conv2d_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, int64_t stride,
                       int64_t padding, Tensor& workspace, Tensor& dweight, Tensor* dbias);

}  // namespace syncbn::ops
