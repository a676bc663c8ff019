#pragma once
// Per-sample normalisation kernels (CUDA): GroupNorm, and through it InstanceNorm and LayerNorm.
// The functions of cpu/group_norm.h, same names, signatures and math (stated there). No CUDA
// types here: the ops (compiled by the host compiler) include this header.
//
// Every pointer is device memory of the current device; the kernels are queued on
// syncbn::cuda::stream() and return without waiting. Row statistics are shifted sums relative to
// the row's first value, fp32 over groups of at most 16 values and double beyond, deterministic.
#include <cstdint>

#include "cpu/norm_shape.h"

namespace syncbn::cuda {

// y and the per-row (n, g) statistics mean(N*G), invstd(N*G); weight, bias may be null.
void group_norm_forward(const float* x, const float* weight, const float* bias,
                        const cpu::GroupNormShape& shape, double eps, float* y, float* mean,
                        float* invstd);

// dx, and grad_weight += sum dy * xhat, grad_bias += sum dy per channel (each when not null).
void group_norm_backward(const float* dy, const float* x, const float* mean, const float* invstd,
                         const float* weight, const cpu::GroupNormShape& shape, float* dx,
                         float* grad_weight, float* grad_bias);

// InstanceNorm running statistics from the per-instance mean, invstd (N, C).
void instance_norm_update_running_stats(const float* mean, const float* invstd, int64_t batch,
                                        int64_t channels, int64_t spatial, double eps,
                                        double momentum, float* running_mean, float* running_var);

}  // namespace syncbn::cuda
