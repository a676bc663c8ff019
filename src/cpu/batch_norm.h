#pragma once
// Batch normalisation kernels (CPU). x is viewed as `shape` (cpu/norm_shape.h): (N, C, S) with
// S = prod(spatial) (NCHW), or (N, S, C) when channels_last (NHWC). Every statistic is per
// channel c, over the n = N * S values of that channel. The same functions, with the same
// signatures, live in syncbn::cuda.
//
// Forward, training (docs/DESIGN.md §3):
//   batch_norm_stats     -> local shifted sums and count [s1(C), s2(C), n_r]   (a synchronised
//                           BN allreduces this packed buffer)
//   batch_norm_finalize  -> mean, invstd, running statistics from the (group) totals
//   batch_norm_elemt     -> y
// Backward:
//   batch_norm_backward_reduce -> local [sum_dy(C), sum_dy_xhat(C)], dgamma, dbeta
//   batch_norm_backward_elemt  -> dx from the (group) sums and the total n, which the forward
//                                 left in the same buffer: [sum_dy(C), sum_dy_xhat(C), n]
#include <cstdint>

#include "cpu/norm_shape.h"

namespace syncbn::cpu {

// With a shift K_c shared by every rank (nullptr: K = 0), in double:
//   stats[c]     = s1_c = sum over the channel of (x - K_c)
//   stats[C + c] = s2_c = sum over the channel of (x - K_c)^2
//   stats[2C]    = n_r  = N * S, the count, written here so that it never crosses from the host
// Shifting by a value near the mean keeps the digits of the variance that plain sums of x and
// x^2 lose when |mean| >> std.
void batch_norm_stats(const float* x, const float* shift, const BatchNormShape& shape,
                      double* stats);

// From packed = [S1(C), S2(C), n] (totals over the sync group; n > 0):
//   mean = K + S1/n,  var = S2/n - (S1/n)^2 (biased),  invstd = 1/sqrt(var + eps).
// When running_mean is not null (training with tracked statistics), also
//   num_batches_tracked += 1 (when not null)
//   f = cumulative_average ? 1/num_batches_tracked : momentum
//   running_mean = (1 - f) running_mean + f mean
//   running_var  = (1 - f) running_var  + f var n/(n - 1)        (needs n > 1)
// shift may alias running_mean: each channel reads K_c before it writes running_mean_c.
void batch_norm_finalize(const double* packed, const float* shift, int64_t channels, double eps,
                         float* mean, float* invstd, float* running_mean, float* running_var,
                         float* num_batches_tracked, double momentum, bool cumulative_average);

// invstd = 1/sqrt(var + eps) (evaluation with running statistics).
void batch_norm_invstd(const float* var, int64_t channels, double eps, float* invstd);

// y = gamma * (x - mean) * invstd + beta; weight (gamma) and bias (beta) may be null
// (affine=false).
void batch_norm_elemt(const float* x, const float* mean, const float* invstd, const float* weight,
                      const float* bias, const BatchNormShape& shape, float* y);

// With xhat = (x - mean) * invstd, the LOCAL sums, in double:
//   sums[c] = sum_dy_c = sum(dy),  sums[C + c] = sum_dy_xhat_c = sum(dy * xhat)
// and, when not null, grad_weight += sum_dy_xhat, grad_bias += sum_dy. sums may be null when
// only the parameter gradients are wanted (statistics held constant).
void batch_norm_backward_reduce(const float* dy, const float* x, const float* mean,
                                const float* invstd, const BatchNormShape& shape, double* sums,
                                float* grad_weight, float* grad_bias);

// dx = gamma * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat), with
// sums = [sum_dy(C), sum_dy_xhat(C), n] over the whole sync group (n > 0). sums == null means
// the statistics were constants (evaluation with running statistics): dx = gamma * invstd * dy.
// weight may be null (gamma = 1).
void batch_norm_backward_elemt(const float* dy, const float* x, const float* mean,
                               const float* invstd, const float* weight, const double* sums,
                               const BatchNormShape& shape, float* dx);

}  // namespace syncbn::cpu
