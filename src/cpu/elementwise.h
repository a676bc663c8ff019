#pragma once
// Elementwise kernels: activations, dropout, bias, and the BLAS-1 style updates.
// Sizes are element counts; outputs may alias inputs of the same index (out == a is fine).
#include <cstdint>

namespace syncbn::cpu {

// y = max(x, 0)
void relu_forward(const float* x, int64_t n, float* y);
// dx = dy where y > 0, else 0 (y is the forward output; y > 0 exactly where x > 0).
void relu_backward(const float* y, const float* dy, int64_t n, float* dx);

// Inverted dropout with a counter-based mask: element i is kept when the 32-bit hash of
// (seed, i) is at least p * 2^32, i.e. with probability 1 - p; kept elements are scaled by
// 1 / (1 - p). mask[i] = kept ? 1 / (1 - p) : 0, y = x * mask. The mask depends only on
// (seed, i), so it is the same for any thread count (and device). Requires 0 <= p < 1.
void dropout_forward(const float* x, uint64_t seed, float p, int64_t n, float* mask, float* y);

// out = a * b
void multiply(const float* a, const float* b, int64_t n, float* out);
// out = a + b
void add(const float* a, const float* b, int64_t n, float* out);
// y += alpha * x
void axpy(float alpha, const float* x, int64_t n, float* y);
// x *= alpha
void scale(float alpha, int64_t n, float* x);

// For y viewed as (outer, channels, inner): y[i][c][j] = bias[c] (a Linear layer's output before
// its GEMM accumulates into it: outer = batch, inner = 1).
void broadcast_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y);
// y[i][c][j] += bias[c]  (NCHW: outer = N, channels = C, inner = H * W)
void add_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y);
// dbias[c] += sum over i, j of dy[i][c][j] (accumulates, as parameter gradients do).
void bias_grad(const float* dy, int64_t outer, int64_t channels, int64_t inner, float* dbias);

}  // namespace syncbn::cpu
