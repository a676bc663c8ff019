#pragma once
// Elementwise operations on tensors (see cpu/elementwise.h for the math of each).
#include <cstdint>

#include "syncbn/tensor.h"

namespace syncbn::ops {

// y = max(x, 0)
Tensor relu_forward(const Tensor& x);
// dx = dy where y > 0, else 0; y is relu_forward's output.
Tensor relu_backward(const Tensor& y, const Tensor& dy);

// Inverted dropout: y = x * mask, mask[i] = 1 / (1 - p) with probability 1 - p, else 0, drawn
// from (seed, i). `mask` is (re)allocated to x's shape when needed and holds the mask after.
Tensor dropout_forward(const Tensor& x, float p, uint64_t seed, Tensor& mask);

// a * b and a + b, elementwise, same shapes.
Tensor multiply(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, const Tensor& b);
// In place: y += x; y += alpha * x; x *= alpha.
void add_(Tensor& y, const Tensor& x);
void axpy_(float alpha, const Tensor& x, Tensor& y);
void scale_(Tensor& x, float alpha);

// y (N, C, *) += bias[c]
void add_bias_(Tensor& y, const Tensor& bias);
// dbias[c] += sum of dy (N, C, *) over every dimension but C.
void accumulate_bias_grad(const Tensor& dy, Tensor& dbias);

}  // namespace syncbn::ops
