#pragma once
// Matrix products on tensors, and the Linear layer's forward and backward built from them.
#include "syncbn/tensor.h"

namespace syncbn::ops {

// c = alpha * op(a) * op(b) + beta * c for 2-D tensors; op transposes when trans_* is set.
// c must already have the product's shape; beta == 0 ignores c's contents.
void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, float alpha, float beta,
          Tensor& c);

// y = x * weight^T + bias, x (N, in), weight (out, in), bias (out) or undefined for none.
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);

// Accumulates dweight += dy^T * x and, when dbias is not null, dbias += sum over rows of dy;
// returns dx = dy * weight. x is the forward input, dy (N, out).
Tensor linear_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, Tensor& dweight,
                       Tensor* dbias);

}  // namespace syncbn::ops
