#include "ops/batch_norm.h"

#include "cpu/batch_norm.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/batch_norm.h"
#endif

namespace syncbn::ops {

namespace {

const float* data_or_null(const Tensor& t) { return t.defined() ? t.data() : nullptr; }
float* data_or_null(Tensor& t) { return t.defined() ? t.data() : nullptr; }

// A per-channel tensor (mean, invstd, weight, ...) must hold C values; undefined passes when
// optional.
void check_per_channel(const char* op, const char* what, const Tensor& t, int64_t channels,
                       bool optional) {
  if (!t.defined()) {
    SYNCBN_CHECK(optional, op, ": ", what, " is required");
    return;
  }
  SYNCBN_CHECK(t.numel() == channels, op, ": ", what, " has ", t.numel(), " values (shape ",
               shape_str(t.shape()), "), expected one per channel (", channels, ")");
}

void check_same_layout(const char* op, const Tensor& dy, const Tensor& x) {
  SYNCBN_CHECK(dy.shape() == x.shape(), op, ": gradient ", shape_str(dy.shape()),
               " does not match input ", shape_str(x.shape()));
  SYNCBN_CHECK(dy.memory_format() == x.memory_format(), op,
               ": gradient and input have different memory formats (NCHW vs channels-last)");
}

}  // namespace

cpu::BatchNormShape batch_norm_shape(const Tensor& x) {
  SYNCBN_CHECK(x.ndim() >= 2, "batch norm: expected input (N, C, *), got shape ",
               shape_str(x.shape()));
  cpu::BatchNormShape shape;
  shape.batch = x.size(0);
  shape.channels = x.size(1);
  for (int d = 2; d < x.ndim(); ++d) shape.spatial *= x.size(d);
  // With no spatial dimensions (N, C) both layouts are the same.
  shape.channels_last = x.memory_format() == MemoryFormat::kChannelsLast && x.ndim() > 2;
  return shape;
}

void batch_norm_stats(const Tensor& x, const Tensor& shift, double* packed) {
  const cpu::BatchNormShape shape = batch_norm_shape(x);
  check_per_channel("batch_norm_stats", "shift", shift, shape.channels, true);
  const Device device = detail::common_device("batch_norm_stats", {&x, &shift});
  SYNCBN_DISPATCH(device, batch_norm_stats, x.data(), data_or_null(shift), shape, packed);
}

void batch_norm_finalize(const double* packed, const Tensor& shift, double eps, Tensor& mean,
                         Tensor& invstd, RunningStats* running) {
  const int64_t channels = mean.numel();
  check_per_channel("batch_norm_finalize", "shift", shift, channels, true);
  check_per_channel("batch_norm_finalize", "invstd", invstd, channels, false);
  float* running_mean = nullptr;
  float* running_var = nullptr;
  float* num_batches_tracked = nullptr;
  const Tensor none;
  if (running) {
    check_per_channel("batch_norm_finalize", "running_mean", running->mean, channels, false);
    check_per_channel("batch_norm_finalize", "running_var", running->var, channels, false);
    SYNCBN_CHECK(running->momentum || running->num_batches_tracked.defined(),
                 "batch_norm_finalize: a cumulative average (momentum None) needs "
                 "num_batches_tracked");
    running_mean = running->mean.data();
    running_var = running->var.data();
    num_batches_tracked = data_or_null(running->num_batches_tracked);
  }
  const Device device = detail::common_device(
      "batch_norm_finalize",
      {&shift, &mean, &invstd, running ? &running->mean : &none, running ? &running->var : &none,
       running ? &running->num_batches_tracked : &none});
  SYNCBN_DISPATCH(device, batch_norm_finalize, packed, data_or_null(shift), channels, eps,
                  mean.data(), invstd.data(), running_mean, running_var, num_batches_tracked,
                  running && running->momentum ? *running->momentum : 0.0,
                  running && !running->momentum);
}

void batch_norm_invstd(const Tensor& var, double eps, Tensor& invstd) {
  check_per_channel("batch_norm_invstd", "invstd", invstd, var.numel(), false);
  const Device device = detail::common_device("batch_norm_invstd", {&var, &invstd});
  SYNCBN_DISPATCH(device, batch_norm_invstd, var.data(), var.numel(), eps, invstd.data());
}

Tensor batch_norm_elemt(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                        const Tensor& weight, const Tensor& bias) {
  const cpu::BatchNormShape shape = batch_norm_shape(x);
  check_per_channel("batch_norm_elemt", "mean", mean, shape.channels, false);
  check_per_channel("batch_norm_elemt", "invstd", invstd, shape.channels, false);
  check_per_channel("batch_norm_elemt", "weight", weight, shape.channels, true);
  check_per_channel("batch_norm_elemt", "bias", bias, shape.channels, true);
  const Device device =
      detail::common_device("batch_norm_elemt", {&x, &mean, &invstd, &weight, &bias});
  Tensor y = Tensor::empty(x.shape(), device);
  y.set_memory_format(x.memory_format());
  SYNCBN_DISPATCH(device, batch_norm_elemt, x.data(), mean.data(), invstd.data(),
                  data_or_null(weight), data_or_null(bias), shape, y.data());
  return y;
}

void batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                const Tensor& invstd, double* sums, Tensor grad_weight,
                                Tensor grad_bias) {
  const cpu::BatchNormShape shape = batch_norm_shape(x);
  check_same_layout("batch_norm_backward_reduce", dy, x);
  check_per_channel("batch_norm_backward_reduce", "mean", mean, shape.channels, false);
  check_per_channel("batch_norm_backward_reduce", "invstd", invstd, shape.channels, false);
  check_per_channel("batch_norm_backward_reduce", "grad_weight", grad_weight, shape.channels, true);
  check_per_channel("batch_norm_backward_reduce", "grad_bias", grad_bias, shape.channels, true);
  const Device device = detail::common_device("batch_norm_backward_reduce",
                                              {&dy, &x, &mean, &invstd, &grad_weight, &grad_bias});
  SYNCBN_DISPATCH(device, batch_norm_backward_reduce, dy.data(), x.data(), mean.data(),
                  invstd.data(), shape, sums, data_or_null(grad_weight), data_or_null(grad_bias));
}

Tensor batch_norm_backward_elemt(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                 const Tensor& invstd, const Tensor& weight, const double* sums) {
  const cpu::BatchNormShape shape = batch_norm_shape(x);
  check_same_layout("batch_norm_backward_elemt", dy, x);
  check_per_channel("batch_norm_backward_elemt", "mean", mean, shape.channels, false);
  check_per_channel("batch_norm_backward_elemt", "invstd", invstd, shape.channels, false);
  check_per_channel("batch_norm_backward_elemt", "weight", weight, shape.channels, true);
  const Device device =
      detail::common_device("batch_norm_backward_elemt", {&dy, &x, &mean, &invstd, &weight});
  Tensor dx = Tensor::empty(x.shape(), device);
  dx.set_memory_format(x.memory_format());
  SYNCBN_DISPATCH(device, batch_norm_backward_elemt, dy.data(), x.data(), mean.data(),
                  invstd.data(), data_or_null(weight), sums, shape, dx.data());
  return dx;
}

}  // namespace syncbn::ops
