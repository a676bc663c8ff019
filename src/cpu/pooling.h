#pragma once
// 2-D pooling over planes: x is (planes, H, W) with planes = N * C (NCHW), y is
// (planes, Ho, Wo), Ho = (H + 2 * padding - kernel) / stride + 1 (PyTorch, ceil_mode=False).
#include <cstdint>

namespace syncbn::cpu {

// y = the maximum over each K x K window (padding never wins); indices[o] = ih * W + iw of the
// maximum in its plane (the first maximum; a NaN wins, as in PyTorch).
void max_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y, int32_t* indices);
// dx[indices[o]] += dy[o] within each plane; dx is overwritten.
void max_pool2d_backward(const float* dy, const int32_t* indices, int64_t planes, int64_t height,
                         int64_t width, int64_t out_height, int64_t out_width, float* dx);

// y = sum over the window / (K * K): padding counts as zeros (count_include_pad=True).
void avg_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y);
// dx[ih][iw] = sum over the windows o covering (ih, iw) of dy[o] / (K * K); dx is overwritten.
void avg_pool2d_backward(const float* dy, int64_t planes, int64_t height, int64_t width,
                         int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                         int64_t out_width, float* dx);

// y[p] = mean of plane p (plane_size elements).
void global_avg_pool2d_forward(const float* x, int64_t planes, int64_t plane_size, float* y);
// dx[p][i] = dy[p] / plane_size
void global_avg_pool2d_backward(const float* dy, int64_t planes, int64_t plane_size, float* dx);

}  // namespace syncbn::cpu
