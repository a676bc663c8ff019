#pragma once
// Batch normalisation ops: shape and device checks around the kernels of cpu/batch_norm.h
// (and cuda/batch_norm.h when built), chosen by the tensors' device. The formulas are stated
// there; docs/DESIGN.md §3 is the contract.
//
// The packed statistics buffers are raw doubles in the device memory of x (Tensor is float32):
//   forward:  [s1(C), s2(C), n]      2C+1 values, what a synchronised BN allreduces
//   backward: [sum_dy(C), sum_dy_xhat(C), n]   the 2C sums written (and allreduced) over s1 and
//             s2 of the same buffer; n is the forward's total count, left in place, so that no
//             count travels between host and device
#include <cstdint>
#include <optional>

#include "cpu/norm_shape.h"
#include "syncbn/tensor.h"

namespace syncbn::ops {

// x (N, C, *) viewed as (N, C, S) with S = prod(*), or as (N, S, C) when x is flagged
// MemoryFormat::kChannelsLast; count() is n_r, the values per channel.
cpu::BatchNormShape batch_norm_shape(const Tensor& x);

// Local shifted sums and count: packed = [sum(x - K)(C), sum((x - K)^2)(C), n_r], in double,
// all written on x's device (no host-device copy).
// shift is K (C values; undefined means K = 0). Every rank of a sync group must use the same K.
void batch_norm_stats(const Tensor& x, const Tensor& shift, double* packed);

// The running statistics a training step updates.
struct RunningStats {
  Tensor mean;                     // (C)
  Tensor var;                      // (C)
  Tensor num_batches_tracked;      // (1); incremented by each update
  std::optional<double> momentum;  // nullopt: cumulative average, factor 1/num_batches_tracked
};

// From packed totals [S1, S2, n] (n > 1 when running is given): mean = K + S1/n,
// invstd = 1/sqrt(S2/n - (S1/n)^2 + eps) into `mean` and `invstd` (C), and, when running is not
// null, the running-statistics update. shift may be the running mean itself.
void batch_norm_finalize(const double* packed, const Tensor& shift, double eps, Tensor& mean,
                         Tensor& invstd, RunningStats* running);

// invstd = 1/sqrt(var + eps), elementwise over (C).
void batch_norm_invstd(const Tensor& var, double eps, Tensor& invstd);

// y = weight * (x - mean) * invstd + bias; weight and bias may be undefined. y is new, with x's
// shape and memory format.
Tensor batch_norm_elemt(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                        const Tensor& weight, const Tensor& bias);

// Local sums [sum_dy(C), sum_dy_xhat(C)] into sums[0, 2C) (may be null), and
// grad_weight += sum_dy_xhat, grad_bias += sum_dy for the defined ones.
void batch_norm_backward_reduce(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                const Tensor& invstd, double* sums, Tensor grad_weight,
                                Tensor grad_bias);

// dx = weight * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat) with the group sums and
// total count n = [sum_dy(C), sum_dy_xhat(C), n] (read on the device; n > 0); sums == null
// means constant statistics (dx = weight * invstd * dy).
Tensor batch_norm_backward_elemt(const Tensor& dy, const Tensor& x, const Tensor& mean,
                                 const Tensor& invstd, const Tensor& weight, const double* sums);

}  // namespace syncbn::ops
