#include "ops/blas.h"

#include "cpu/blas.h"
#include "cpu/elementwise.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/blas.h"
#include "cuda/elementwise.h"
#endif

namespace syncbn::ops {

void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, float alpha, float beta,
          Tensor& c) {
  SYNCBN_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm: expected 2-D tensors, got ",
               shape_str(a.shape()), ", ", shape_str(b.shape()), ", ", shape_str(c.shape()));
  const int64_t m = trans_a ? a.size(1) : a.size(0);
  const int64_t k = trans_a ? a.size(0) : a.size(1);
  const int64_t k_b = trans_b ? b.size(1) : b.size(0);
  const int64_t n = trans_b ? b.size(0) : b.size(1);
  SYNCBN_CHECK(k == k_b && c.size(0) == m && c.size(1) == n, "gemm: shapes do not chain: op(a) ", m,
               "x", k, ", op(b) ", k_b, "x", n, ", c ", shape_str(c.shape()));
  const Device device = detail::common_device("gemm", {&a, &b, &c});
  SYNCBN_DISPATCH(device, gemm, trans_a, trans_b, m, n, k, alpha, a.data(), a.size(1), b.data(),
                  b.size(1), beta, c.data(), c.size(1));
}

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  SYNCBN_CHECK(x.ndim() == 2, "Linear: expected input (N, in_features), got ", shape_str(x.shape()),
               " (flatten it first)");
  SYNCBN_CHECK(weight.ndim() == 2 && x.size(1) == weight.size(1), "Linear: input ",
               shape_str(x.shape()), " has ", x.size(1), " features, the layer expects ",
               weight.size(1));
  const Device device = detail::common_device("Linear", {&x, &weight, &bias});
  const int64_t batch = x.size(0), out = weight.size(0);
  Tensor y = Tensor::empty({batch, out}, device);
  // With the bias written first, the GEMM adds into it (beta = 1): one pass over y.
  float beta = 0.0f;
  if (bias.defined()) {
    SYNCBN_CHECK(bias.numel() == out, "Linear: bias has ", bias.numel(), " values for ", out,
                 " outputs");
    SYNCBN_DISPATCH(device, broadcast_bias, bias.data(), batch, out, int64_t{1}, y.data());
    beta = 1.0f;
  }
  gemm(x, false, weight, true, 1.0f, beta, y);
  return y;
}

Tensor linear_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, Tensor& dweight,
                       Tensor* dbias) {
  SYNCBN_CHECK(dy.ndim() == 2 && dy.size(0) == x.size(0) && dy.size(1) == weight.size(0),
               "Linear backward: gradient ", shape_str(dy.shape()), " does not match the output (",
               x.size(0), ", ", weight.size(0), ")");
  const Device device = detail::common_device("Linear backward", {&x, &dy, &weight, &dweight});
  // dweight (out, in) += dy^T (out, N) * x (N, in)
  gemm(dy, true, x, false, 1.0f, 1.0f, dweight);
  if (dbias) {
    detail::common_device("Linear backward", {&dy, dbias});
    SYNCBN_DISPATCH(device, bias_grad, dy.data(), dy.size(0), dy.size(1), int64_t{1},
                    dbias->data());
  }
  // dx (N, in) = dy (N, out) * weight (out, in)
  Tensor dx = Tensor::empty(x.shape(), device);
  gemm(dy, false, weight, false, 1.0f, 0.0f, dx);
  return dx;
}

}  // namespace syncbn::ops
