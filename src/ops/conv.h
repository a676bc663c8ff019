#pragma once
// 2-D convolution (cross-correlation, as torch.nn.Conv2d) on NCHW tensors, as im2col + GEMM over
// the whole batch at once (see cpu/conv.h for the column layout).
#include <cstdint>

#include "syncbn/tensor.h"

namespace syncbn::ops {

// Buffers a convolution keeps between calls: allocated on first use and reused while the
// shapes stay the same, so a training step allocates only its outputs.
struct Conv2dWorkspace {
  Tensor columns;         // im2col of the last forward's input (C*K*K, N*Ho*Wo); read by backward
  Tensor output_columns;  // (O, N*Ho*Wo): the forward GEMM's result, then dy in that order
  Tensor grad_columns;    // (C*K*K, N*Ho*Wo): dL/dcolumns in backward
};

// Output size of a convolution or pooling window along one dimension (floor mode).
int64_t conv_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding);

// y (N, O, Ho, Wo) = conv(x (N, C, H, W), weight (O, C, K, K)) + bias (O, or undefined).
// Keeps the columns of x in workspace.columns for conv2d_backward.
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t padding, Conv2dWorkspace& workspace);

// From dy (N, O, Ho, Wo) and the columns of the matching forward: accumulates
// dweight += dy * columns^T and (when dbias is not null) dbias += sums of dy per channel;
// returns dx (input_shape) = col2im(weight^T * dy).
Tensor conv2d_backward(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                       int64_t stride, int64_t padding, Conv2dWorkspace& workspace,
                       Tensor& dweight, Tensor* dbias);

}  // namespace syncbn::ops
