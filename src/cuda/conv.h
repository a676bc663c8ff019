#pragma once
// 2-D convolution on the GPU through cuDNN (see cpu/conv.h for the contract; Conv2dShape is the
// CPU header's plain struct, shared by both backends). Included by g++-compiled ops files: no
// CUDA types here.
#include <cstdint>

#include "cpu/conv.h"

namespace syncbn::cuda {

// *floats = the device workspace that conv2d_forward and conv2d_backward need for this shape:
// the largest workspace of the three cuDNN algorithms chosen for it (chosen once per shape and
// device, then cached).
void conv2d_workspace_size(const cpu::Conv2dShape& shape, int64_t* floats);

// y (N, O, Ho, Wo) = conv(x (N, C, H, W), weight (O, C, K, K)) + bias (O; may be null).
void conv2d_forward(const float* x, const float* weight, const float* bias,
                    const cpu::Conv2dShape& shape, float* workspace, float* y);

// dweight += dL/dweight and dbias += dL/dbias (when not null) accumulate; dx is overwritten.
void conv2d_backward(const float* x, const float* weight, const float* dy,
                     const cpu::Conv2dShape& shape, float* workspace, float* dx, float* dweight,
                     float* dbias);

}  // namespace syncbn::cuda
