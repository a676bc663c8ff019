#include "ops/elementwise.h"

#include "cpu/elementwise.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/elementwise.h"
#endif

namespace syncbn::ops {

namespace {

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  SYNCBN_CHECK(a.defined() && b.defined(), op, ": undefined tensor");
  SYNCBN_CHECK(a.shape() == b.shape(), op, ": shapes differ, ", shape_str(a.shape()), " and ",
               shape_str(b.shape()));
}

// (outer, channels, inner) of a (N, C, *) tensor for the per-channel bias operations.
struct ChannelView {
  int64_t outer, channels, inner;
};
ChannelView channel_view(const char* op, const Tensor& y, const Tensor& bias) {
  SYNCBN_CHECK(y.ndim() >= 2, op, ": expected (N, C, *), got ", shape_str(y.shape()));
  const int64_t channels = y.size(1);
  SYNCBN_CHECK(bias.defined() && bias.numel() == channels, op, ": bias of ",
               bias.defined() ? bias.numel() : 0, " values for ", channels, " channels");
  const int64_t outer = y.size(0);
  const int64_t inner = outer * channels == 0 ? 0 : y.numel() / (outer * channels);
  return {outer, channels, inner};
}

}  // namespace

Tensor relu_forward(const Tensor& x) {
  const Device device = detail::common_device("relu", {&x});
  Tensor y = Tensor::empty(x.shape(), device);
  SYNCBN_DISPATCH(device, relu_forward, x.data(), x.numel(), y.data());
  return y;
}

Tensor relu_backward(const Tensor& y, const Tensor& dy) {
  check_same_shape("relu backward", y, dy);
  const Device device = detail::common_device("relu backward", {&y, &dy});
  Tensor dx = Tensor::empty(y.shape(), device);
  SYNCBN_DISPATCH(device, relu_backward, y.data(), dy.data(), y.numel(), dx.data());
  return dx;
}

Tensor dropout_forward(const Tensor& x, float p, uint64_t seed, Tensor& mask) {
  SYNCBN_CHECK(p >= 0.0f && p < 1.0f, "dropout_forward: p must be in [0, 1), got ", p);
  const Device device = detail::common_device("dropout", {&x});
  if (!mask.defined() || mask.shape() != x.shape() || mask.device() != device) {
    mask = Tensor::empty(x.shape(), device);
  }
  Tensor y = Tensor::empty(x.shape(), device);
  SYNCBN_DISPATCH(device, dropout_forward, x.data(), seed, p, x.numel(), mask.data(), y.data());
  return y;
}

Tensor multiply(const Tensor& a, const Tensor& b) {
  check_same_shape("multiply", a, b);
  const Device device = detail::common_device("multiply", {&a, &b});
  Tensor out = Tensor::empty(a.shape(), device);
  SYNCBN_DISPATCH(device, multiply, a.data(), b.data(), a.numel(), out.data());
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  check_same_shape("add", a, b);
  const Device device = detail::common_device("add", {&a, &b});
  Tensor out = Tensor::empty(a.shape(), device);
  SYNCBN_DISPATCH(device, add, a.data(), b.data(), a.numel(), out.data());
  return out;
}

void add_(Tensor& y, const Tensor& x) {
  check_same_shape("add_", y, x);
  const Device device = detail::common_device("add_", {&y, &x});
  SYNCBN_DISPATCH(device, add, y.data(), x.data(), y.numel(), y.data());
}

void axpy_(float alpha, const Tensor& x, Tensor& y) {
  check_same_shape("axpy_", x, y);
  const Device device = detail::common_device("axpy_", {&x, &y});
  SYNCBN_DISPATCH(device, axpy, alpha, x.data(), x.numel(), y.data());
}

void scale_(Tensor& x, float alpha) {
  SYNCBN_CHECK(x.defined(), "scale_: undefined tensor");
  const Device device = detail::common_device("scale_", {&x});
  SYNCBN_DISPATCH(device, scale, alpha, x.numel(), x.data());
}

void add_bias_(Tensor& y, const Tensor& bias) {
  const ChannelView view = channel_view("add_bias_", y, bias);
  const Device device = detail::common_device("add_bias_", {&y, &bias});
  SYNCBN_DISPATCH(device, add_bias, bias.data(), view.outer, view.channels, view.inner, y.data());
}

void accumulate_bias_grad(const Tensor& dy, Tensor& dbias) {
  const ChannelView view = channel_view("accumulate_bias_grad", dy, dbias);
  const Device device = detail::common_device("accumulate_bias_grad", {&dy, &dbias});
  SYNCBN_DISPATCH(device, bias_grad, dy.data(), view.outer, view.channels, view.inner,
                  dbias.data());
}

}  // namespace syncbn::ops
