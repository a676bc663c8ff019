#pragma once
// Elementwise kernels on the GPU (see cpu/elementwise.h for the math of each). Device pointers;
// outputs may alias inputs of the same index. Included by g++-compiled ops files: no CUDA types.
#include <cstdint>

namespace syncbn::cuda {

void relu_forward(const float* x, int64_t n, float* y);
void relu_backward(const float* y, const float* dy, int64_t n, float* dx);

// The same mask as cpu::dropout_forward for the same (seed, p, n): it depends only on (seed, i).
void dropout_forward(const float* x, uint64_t seed, float p, int64_t n, float* mask, float* y);

void multiply(const float* a, const float* b, int64_t n, float* out);
void add(const float* a, const float* b, int64_t n, float* out);
void axpy(float alpha, const float* x, int64_t n, float* y);
void scale(float alpha, int64_t n, float* x);

void broadcast_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y);
void add_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y);
// dbias[c] += sum over i, j of dy[i][c][j]; deterministic (fixed reduction order).
void bias_grad(const float* dy, int64_t outer, int64_t channels, int64_t inner, float* dbias);

}  // namespace syncbn::cuda
