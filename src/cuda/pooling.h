#pragma once
// 2-D pooling on the GPU (see cpu/pooling.h for the math). Device pointers; `indices` is int32
// device memory. Included by g++-compiled ops files: no CUDA types here.
#include <cstdint>

namespace syncbn::cuda {

void max_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y, int32_t* indices);
void max_pool2d_backward(const float* dy, const int32_t* indices, int64_t planes, int64_t height,
                         int64_t width, int64_t out_height, int64_t out_width, float* dx);

void avg_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y);
void avg_pool2d_backward(const float* dy, int64_t planes, int64_t height, int64_t width,
                         int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                         int64_t out_width, float* dx);

void global_avg_pool2d_forward(const float* x, int64_t planes, int64_t plane_size, float* y);
void global_avg_pool2d_backward(const float* dy, int64_t planes, int64_t plane_size, float* dx);

}  // namespace syncbn::cuda
