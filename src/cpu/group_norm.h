#pragma once
// Per-sample normalisation kernels (CPU): GroupNorm, and through it InstanceNorm and LayerNorm.
//
// x is viewed as `shape` (cpu/norm_shape.h): (N, C, S), S = prod(spatial), contiguous (NCHW).
// The C channels form G groups of
// C/G consecutive channels; row (n, g) is the (C/G) * S contiguous values of group g of sample n,
// and every statistic is per row:
//   mean = mean(row), var = biased variance(row), invstd = 1/sqrt(var + eps),
//   y = gamma_c * (x - mean) * invstd + beta_c        (gamma, beta per channel c)
// InstanceNorm is G = C. LayerNorm over a trailing shape of D values is N = rows, C = D, S = 1,
// G = 1: its per-element gamma is the per-"channel" gamma of that view.
#include <cstdint>

#include "cpu/norm_shape.h"

namespace syncbn::cpu {

// Writes y and the per-row statistics mean(N*G), invstd(N*G) that backward needs.
// weight (gamma) and bias (beta) may be null.
void group_norm_forward(const float* x, const float* weight, const float* bias,
                        const GroupNormShape& shape, double eps, float* y, float* mean,
                        float* invstd);

// With D = (C/G) * S values per row, xhat = (x - mean) * invstd and g = gamma_c * dy:
//   dx = invstd * (g - mean_row(g) - xhat * mean_row(g * xhat))
//   grad_weight_c += sum over n, s of dy * xhat,  grad_bias_c += sum over n, s of dy
// weight may be null (gamma = 1); grad_weight, grad_bias may be null (not affine).
void group_norm_backward(const float* dy, const float* x, const float* mean, const float* invstd,
                         const float* weight, const GroupNormShape& shape, float* dx,
                         float* grad_weight, float* grad_bias);

// InstanceNorm running statistics from the per-instance statistics of a training batch
// (mean and invstd are (N, C)), as torch does through batch_norm on a (1, N*C, S) view:
//   var_nc = 1/invstd_nc^2 - eps (biased),
//   running_mean = (1 - m) running_mean + m mean_n(mean_nc)
//   running_var  = (1 - m) running_var  + m mean_n(var_nc * S/(S - 1))
void instance_norm_update_running_stats(const float* mean, const float* invstd, int64_t batch,
                                        int64_t channels, int64_t spatial, double eps,
                                        double momentum, float* running_mean, float* running_var);

}  // namespace syncbn::cpu
