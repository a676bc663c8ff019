#pragma once
// Per-sample normalisation ops (GroupNorm, InstanceNorm, LayerNorm): checks around the kernels of
// cpu/group_norm.h, whose comments state the math. All three share one kernel pair: a LayerNorm
// over D trailing values is a GroupNorm of one group over D channels of one value each.
#include <cstdint>

#include "syncbn/tensor.h"

namespace syncbn::ops {

// x (N, C, *) contiguous NCHW; statistics per (sample, group) into mean, invstd, which are
// (re)allocated to (N * groups) values when their size or device differs (reused otherwise).
// weight, bias (C) may be undefined. Returns y.
Tensor group_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t groups,
                          double eps, Tensor& mean, Tensor& invstd);
// Returns dx; grad_weight, grad_bias (C) accumulate (+=) when defined.
Tensor group_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                           const Tensor& invstd, const Tensor& weight, int64_t groups,
                           Tensor grad_weight, Tensor grad_bias);

// x (*, normalized) where the trailing dimensions hold `normalized_numel` values; statistics
// per leading index. weight, bias hold normalized_numel values or are undefined.
Tensor layer_norm_forward(const Tensor& x, int64_t normalized_numel, const Tensor& weight,
                          const Tensor& bias, double eps, Tensor& mean, Tensor& invstd);
Tensor layer_norm_backward(const Tensor& dy, const Tensor& x, int64_t normalized_numel,
                           const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                           Tensor grad_weight, Tensor grad_bias);

// InstanceNorm running statistics from the per-instance mean, invstd (N, C) of x (N, C, *).
void instance_norm_update_running_stats(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                        double eps, double momentum, Tensor& running_mean,
                                        Tensor& running_var);

}  // namespace syncbn::ops
