#include "ops/group_norm.h"

#include "cpu/group_norm.h"
#include "cpu/norm_shape.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/group_norm.h"
#endif

namespace syncbn::ops {

namespace {

const float* data_or_null(const Tensor& t) { return t.defined() ? t.data() : nullptr; }
float* data_or_null(Tensor& t) { return t.defined() ? t.data() : nullptr; }

void check_affine(const char* op, const char* what, const Tensor& t, int64_t expected) {
  if (!t.defined()) return;
  SYNCBN_CHECK(t.numel() == expected, op, ": ", what, " has ", t.numel(), " values (shape ",
               shape_str(t.shape()), "), expected ", expected);
}

void ensure_size(Tensor& t, int64_t numel, Device device) {
  if (!t.defined() || t.numel() != numel || t.device() != device)
    t = Tensor::empty({numel}, device);
}

Tensor forward_rows(const char* op, const Tensor& x, const cpu::GroupNormShape& v,
                    const Tensor& weight, const Tensor& bias, double eps, Tensor& mean,
                    Tensor& invstd) {
  SYNCBN_CHECK(x.memory_format() == MemoryFormat::kContiguous, op,
               ": channels-last input is not supported; use an NCHW tensor");
  check_affine(op, "weight", weight, v.channels);
  check_affine(op, "bias", bias, v.channels);
  const Device device = detail::common_device(op, {&x, &weight, &bias});
  ensure_size(mean, v.rows(), device);
  ensure_size(invstd, v.rows(), device);
  Tensor y = Tensor::empty(x.shape(), device);
  SYNCBN_DISPATCH(device, group_norm_forward, x.data(), data_or_null(weight), data_or_null(bias), v,
                  eps, y.data(), mean.data(), invstd.data());
  return y;
}

Tensor backward_rows(const char* op, const Tensor& dy, const Tensor& x,
                     const cpu::GroupNormShape& v, const Tensor& mean, const Tensor& invstd,
                     const Tensor& weight, Tensor grad_weight, Tensor grad_bias) {
  SYNCBN_CHECK(dy.shape() == x.shape(), op, ": gradient ", shape_str(dy.shape()),
               " does not match input ", shape_str(x.shape()));
  SYNCBN_CHECK(
      mean.defined() && invstd.defined() && mean.numel() == v.rows() && invstd.numel() == v.rows(),
      op, ": saved statistics do not match the input ", shape_str(x.shape()),
      " (backward without the matching forward?)");
  check_affine(op, "weight", weight, v.channels);
  check_affine(op, "grad_weight", grad_weight, v.channels);
  check_affine(op, "grad_bias", grad_bias, v.channels);
  const Device device =
      detail::common_device(op, {&dy, &x, &mean, &invstd, &weight, &grad_weight, &grad_bias});
  Tensor dx = Tensor::empty(x.shape(), device);
  SYNCBN_DISPATCH(device, group_norm_backward, dy.data(), x.data(), mean.data(), invstd.data(),
                  data_or_null(weight), v, dx.data(), data_or_null(grad_weight),
                  data_or_null(grad_bias));
  return dx;
}

// x (N, C, *) as the kernels' (N, C, S) view with `groups` groups of channels.
cpu::GroupNormShape group_view(const char* op, const Tensor& x, int64_t groups) {
  SYNCBN_CHECK(x.ndim() >= 2, op, ": expected input (N, C, *), got shape ", shape_str(x.shape()));
  cpu::GroupNormShape v{x.size(0), x.size(1), 1, groups};
  for (int d = 2; d < x.ndim(); ++d) v.spatial *= x.size(d);
  SYNCBN_CHECK(groups > 0 && v.channels % groups == 0, op,
               ": expected the number of channels to be divisible by num_groups, got input of "
               "shape ",
               shape_str(x.shape()), " and num_groups=", groups);
  return v;
}

// x (*, normalized) as N = leading values, C = normalized_numel, S = 1, G = 1.
cpu::GroupNormShape layer_view(const char* op, const Tensor& x, int64_t normalized_numel) {
  SYNCBN_CHECK(normalized_numel > 0 && x.numel() % normalized_numel == 0, op, ": input ",
               shape_str(x.shape()), " does not end with ", normalized_numel, " normalized values");
  return {x.numel() / normalized_numel, normalized_numel, 1, 1};
}

}  // namespace

Tensor group_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                          double eps, Tensor& mean, Tensor& invstd) {
  const char* op = "group_norm_forward";
  return forward_rows(op, x, group_view(op, x, groups), weight, bias, eps, mean, invstd);
}

Tensor group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                           const Tensor& invstd, const Tensor& weight, int64_t groups,
                           Tensor grad_weight, Tensor grad_bias) {
  const char* op = "group_norm_backward";
  return backward_rows(op, dy, x, group_view(op, x, groups), mean, invstd, weight, grad_weight,
                       grad_bias);
}

Tensor layer_norm_forward(const Tensor& x, int64_t normalized_numel, const Tensor& weight,
                          const Tensor& bias, double eps, Tensor& mean, Tensor& invstd) {
  const char* op = "layer_norm_forward";
  return forward_rows(op, x, layer_view(op, x, normalized_numel), weight, bias, eps, mean, invstd);
}

Tensor layer_norm_backward(const Tensor& dy, const Tensor& x, int64_t normalized_numel,
                           const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                           Tensor grad_weight, Tensor grad_bias) {
  const char* op = "layer_norm_backward";
  return backward_rows(op, dy, x, layer_view(op, x, normalized_numel), mean, invstd, weight,
                       grad_weight, grad_bias);
}

void instance_norm_update_running_stats(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                        double eps, double momentum, Tensor& running_mean,
                                        Tensor& running_var) {
  const char* op = "instance_norm_update_running_stats";
  const cpu::GroupNormShape v = group_view(op, x, x.ndim() >= 2 ? x.size(1) : 1);
  SYNCBN_CHECK(v.spatial > 1, op, ": needs more than 1 spatial element, got input size ",
               shape_str(x.shape()));
  SYNCBN_CHECK(mean.numel() == v.batch * v.channels && invstd.numel() == mean.numel(), op,
               ": statistics do not match the input ", shape_str(x.shape()));
  check_affine(op, "running_mean", running_mean, v.channels);
  check_affine(op, "running_var", running_var, v.channels);
  if (v.batch == 0) return;
  const Device device = detail::common_device(op, {&mean, &invstd, &running_mean, &running_var});
  SYNCBN_DISPATCH(device, instance_norm_update_running_stats, mean.data(), invstd.data(), v.batch,
                  v.channels, v.spatial, eps, momentum, running_mean.data(), running_var.data());
}

}  // namespace syncbn::ops
