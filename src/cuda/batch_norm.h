#pragma once
// Batch normalisation kernels (CUDA): the functions of cpu/batch_norm.h, same names, signatures
// and math (stated there; docs/DESIGN.md §3 is the contract). No CUDA types here: the ops
// (compiled by the host compiler) include this header.
//
// Every pointer is device memory of the current device (the packed double buffers, the saved
// mean/invstd, the running statistics and num_batches_tracked included); scalars (eps,
// momentum) are host values, and counts stay in the packed buffers on the device. The kernels are
// queued on syncbn::cuda::stream() and return without waiting. Reductions are deterministic: the
// same inputs give the same bits on every run (fp32 sums over groups of at most 16 values, double
// beyond; no atomics).
#include <cstdint>

#include "cpu/norm_shape.h"

namespace syncbn::cuda {

// stats[c] = sum(x - K_c), stats[C + c] = sum((x - K_c)^2), K = shift (nullptr: K = 0), and
// stats[2C] = n_r (written by a one-thread kernel: no host-to-device copy, no wait).
// Internally each channel is summed relative to its first value L_c (so fp32 keeps the digits of
// the variance whatever K is) and moved to K in double:
//   sum(x - K) = sum(x - L) + n (L - K),
//   sum((x - K)^2) = sum((x - L)^2) + 2 (L - K) sum(x - L) + n (L - K)^2.
// An empty batch (N * S == 0) writes zeros (n_r = 0 included).
void batch_norm_stats(const float* x, const float* shift, const cpu::BatchNormShape& shape,
                      double* stats);

// From packed = [S1(C), S2(C), n]: mean, invstd and the running-statistics update (see
// cpu/batch_norm.h). num_batches_tracked is incremented by a one-thread kernel queued first.
void batch_norm_finalize(const double* packed, const float* shift, int64_t channels, double eps,
                         float* mean, float* invstd, float* running_mean, float* running_var,
                         float* num_batches_tracked, double momentum, bool cumulative_average);

// invstd = 1/sqrt(var + eps).
void batch_norm_invstd(const float* var, int64_t channels, double eps, float* invstd);

// y = gamma * (x - mean) * invstd + beta; weight and bias may be null.
void batch_norm_elemt(const float* x, const float* mean, const float* invstd, const float* weight,
                      const float* bias, const cpu::BatchNormShape& shape, float* y);

// sums = [sum(dy), sum(dy * xhat)] (may be null), grad_weight += sum(dy * xhat),
// grad_bias += sum(dy) (each when not null).
void batch_norm_backward_reduce(const float* dy, const float* x, const float* mean,
                                const float* invstd, const cpu::BatchNormShape& shape, double* sums,
                                float* grad_weight, float* grad_bias);

// dx = gamma * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat) with
// sums = [sum_dy(C), sum_dy_xhat(C), n], n read on the device; sums == null:
// dx = gamma * invstd * dy.
void batch_norm_backward_elemt(const float* dy, const float* x, const float* mean,
                               const float* invstd, const float* weight, const double* sums,
                               const cpu::BatchNormShape& shape, float* dx);

}  // namespace syncbn::cuda
