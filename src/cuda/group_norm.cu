// Per-sample normalisation kernels (CUDA): GroupNorm, InstanceNorm (G = C), LayerNorm (S = 1,
// G = 1). The math is stated in cpu/group_norm.h; the reduction and elementwise machinery in
// cuda/norm_common.cuh and cuda/norm_affine.cuh.
//
// x is (N, C, S) NCHW; row (n, g) is the D = (C/G) * S contiguous values of group g of sample n,
// at x + (n*G + g) * D. For the row reductions the rows are the "channels" of a (1, N*G, D)
// view, so the same kernels that reduce a batch-norm channel reduce a row (split over several
// blocks when rows are few and long).
//   forward:  row statistics (reads x) -> mean, invstd;  y (reads x, writes y)
//   backward: row sums of gamma dy and gamma dy (x - mean) (reads dy, x) -> per-row coefficients;
//             dx (reads dy, x, writes dx);
//             per-channel parameter gradients (reads dy, x), when asked for.
#include "cuda/group_norm.h"
#include "cuda/norm_affine.cuh"
#include "cuda/norm_common.cuh"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

using norm::Affine;

// Row statistics relative to the row's first value L (the CPU kernel's shift):
//   mean = L + sum(x - L)/D,  var = max(sum((x - L)^2)/D - (sum(x - L)/D)^2, 0),
//   invstd = 1/sqrt(var + eps).
struct GroupStatsOp {
  static constexpr bool kHasDy = false;
  using Channel = float;

  const float* x;
  int64_t row_size;  // D
  double eps;
  float* mean;
  float* invstd;

  template <class Index>
  __device__ float channel(Index row) const {
    return __ldg(x + static_cast<int64_t>(row) * row_size);
  }
  template <class Index>
  __device__ float2 element(float first, Index, Index, Index, float value, float) const {
    const float d = value - first;
    return make_float2(d, d * d);
  }
  template <class Index>
  __device__ void finish(Index row, double sum_d, double sum_d2) const {
    const double count = static_cast<double>(row_size);
    const double shifted_mean = sum_d / count;
    const double biased = sum_d2 / count - shifted_mean * shifted_mean;
    const double var = biased < 0.0 ? 0.0 : biased;  // NaN passes through, as on the CPU
    mean[row] = static_cast<float>(static_cast<double>(channel(row)) + shifted_mean);
    invstd[row] = static_cast<float>(1.0 / sqrt(var + eps));
  }
};

// Per row, with g = gamma_c * dy: sum_g = sum(g), sum_gxmu = sum(g * (x - mean)); finish turns
// them into the row's dx coefficients (cpu::group_norm_backward):
//   dx = invstd gamma dy + coefficient_xmu (x - mean) + constant,
//   coefficient_xmu = -invstd^3 sum_gxmu / D,  constant = -invstd sum_g / D,
// stored as row_coef = [coefficient_xmu(rows), constant(rows)].
struct GroupBackwardRowOp {
  static constexpr bool kHasDy = true;
  struct Channel {
    float mean;
    int64_t first_channel;  // of the row's group
  };

  const float* mean;
  const float* invstd;
  const float* weight;  // may be null (gamma = 1)
  int64_t groups;
  int64_t channels_per_group;
  IndexDivider spatial;  // a value at offset pos in its row belongs to channel pos / S of the group
  int64_t row_size;
  int64_t rows;
  float* row_coef;

  template <class Index>
  __device__ Channel channel(Index row) const {
    return {__ldg(mean + row), static_cast<int64_t>(row % groups) * channels_per_group};
  }
  template <class Index>
  __device__ float2 element(const Channel& ch, Index, Index, Index pos, float value,
                            float dy) const {
    const float gamma = weight ? __ldg(weight + ch.first_channel + spatial.div(pos)) : 1.0f;
    const float g = gamma * dy;
    return make_float2(g, g * (value - ch.mean));
  }
  template <class Index>
  __device__ void finish(Index row, double sum_g, double sum_gxmu) const {
    const double r = invstd[row];
    const double count = static_cast<double>(row_size);
    row_coef[row] = static_cast<float>(-r * r * r * sum_gxmu / count);
    row_coef[rows + row] = static_cast<float>(-r * sum_g / count);
  }
};

// Per channel c over (n, s), with row = n*G + c/(C/G):
//   grad_bias_c += sum(dy),  grad_weight_c += sum(dy * (x - mean_row) * invstd_row).
// Reduced as planes (n is the batch index), or as columns when S == 1 (the row is then n too).
struct GroupParamGradOp {
  static constexpr bool kHasDy = true;
  using Channel = int64_t;  // the channel's group

  const float* mean;
  const float* invstd;
  int64_t groups;
  int64_t channels_per_group;
  float* grad_weight;
  float* grad_bias;

  template <class Index>
  __device__ int64_t channel(Index c) const {
    return static_cast<int64_t>(c) / channels_per_group;
  }
  template <class Index>
  __device__ float2 element(int64_t group, Index n, Index, Index, float value, float dy) const {
    const int64_t row = static_cast<int64_t>(n) * groups + group;
    return make_float2(dy, dy * (value - __ldg(mean + row)) * __ldg(invstd + row));
  }
  template <class Index>
  __device__ void finish(Index c, double sum_dy, double sum_dy_xhat) const {
    if (grad_weight) grad_weight[c] += static_cast<float>(sum_dy_xhat);
    if (grad_bias) grad_bias[c] += static_cast<float>(sum_dy);
  }
};

// y = (x - mean_row) * (invstd_row * gamma_c) + beta_c, as the CPU kernel.
struct GroupForwardCoef {
  const float* mean;
  const float* invstd;
  const float* weight;
  const float* bias;
  IndexDivider channels_per_group;  // plane n*C + c is in row (n*C + c) / (C/G) = n*G + g

  template <class Index>
  __device__ Affine at(Index plane, Index c) const {
    const Index row = channels_per_group.div(plane);
    const float scale = __fmul_rn(__ldg(invstd + row), weight ? __ldg(weight + c) : 1.0f);
    return {__ldg(mean + row), 0.0f, scale, bias ? __ldg(bias + c) : 0.0f};
  }
  template <int kVec, class Index>
  __device__ void lanes(Index plane0, Index c0, Affine (&k)[kVec]) const {
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      k[j] = at(static_cast<Index>(plane0 + j), static_cast<Index>(c0 + j));
  }
};

// dx = float(invstd_row * gamma_c) dy + coefficient_xmu_row (x - mean_row) + constant_row.
struct GroupBackwardCoef {
  const float* mean;
  const float* invstd;
  const float* weight;
  const float* row_coef;  // [coefficient_xmu(rows), constant(rows)]
  int64_t rows;
  IndexDivider channels_per_group;

  template <class Index>
  __device__ Affine at(Index plane, Index c) const {
    const Index row = channels_per_group.div(plane);
    const double r = __ldg(invstd + row);
    const float a = static_cast<float>(r * (weight ? __ldg(weight + c) : 1.0f));
    return {__ldg(mean + row), a, __ldg(row_coef + row), __ldg(row_coef + rows + row)};
  }
  template <int kVec, class Index>
  __device__ void lanes(Index plane0, Index c0, Affine (&k)[kVec]) const {
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      k[j] = at(static_cast<Index>(plane0 + j), static_cast<Index>(c0 + j));
  }
};

// Thread r: the statistics of an empty row (D = 0), as the CPU kernel: mean 0, var 0.
__global__ void empty_rows_kernel(int64_t rows, double eps, float* __restrict__ mean,
                                  float* __restrict__ invstd) {
  for (int64_t r : grid_stride(rows)) {
    mean[r] = 0.0f;
    invstd[r] = static_cast<float>(1.0 / sqrt(eps));
  }
}

// Thread c: channel c of cpu::instance_norm_update_running_stats, in double, n in order:
//   var_nc = max(1/invstd_nc^2 - eps, 0) S/(S - 1),
//   running_mean = (1 - m) running_mean + m mean_n(mean_nc),
//   running_var  = (1 - m) running_var  + m mean_n(var_nc).
__global__ void instance_norm_running_stats_kernel(const float* __restrict__ mean,
                                                   const float* __restrict__ invstd, int64_t batch,
                                                   int64_t channels, int64_t spatial, double eps,
                                                   double momentum,
                                                   float* __restrict__ running_mean,
                                                   float* __restrict__ running_var) {
  const double unbiased = static_cast<double>(spatial) / static_cast<double>(spatial - 1);
  for (int64_t c : grid_stride(channels)) {
    double mean_sum = 0.0, var_sum = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      const double r = invstd[n * channels + c];
      mean_sum += mean[n * channels + c];
      const double var = 1.0 / (r * r) - eps;
      var_sum += (var < 0.0 ? 0.0 : var) * unbiased;
    }
    running_mean[c] =
        static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean_sum / batch);
    running_var[c] =
        static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var_sum / batch);
  }
}

// The rows of x as the channels of a (1, N*G, D) view, for the row reductions.
cpu::BatchNormShape rows_view(const cpu::GroupNormShape& shape) {
  return {1, shape.rows(), shape.row_size(), false};
}

// x as (N, C, S) NCHW, for the elementwise maps.
cpu::BatchNormShape planes_view(const cpu::GroupNormShape& shape) {
  return {shape.batch, shape.channels, shape.spatial, false};
}

}  // namespace

void group_norm_forward(const float* x, const float* weight, const float* bias,
                        const cpu::GroupNormShape& shape, double eps, float* y, float* mean,
                        float* invstd) {
  const int64_t rows = shape.rows();
  if (rows == 0) return;
  const int64_t row_size = shape.row_size();
  if (row_size == 0) {
    launch(empty_rows_kernel, dim3(blocks_for(rows)), dim3(kThreads), rows, eps, mean, invstd);
    return;
  }
  norm::reduce_per_channel(x, nullptr, rows_view(shape),
                           GroupStatsOp{x, row_size, eps, mean, invstd});
  norm::launch_affine<false>(
      x, nullptr, y, planes_view(shape),
      GroupForwardCoef{mean, invstd, weight, bias, IndexDivider(shape.channels_per_group())});
}

void group_norm_backward(const float* dy, const float* x, const float* mean, const float* invstd,
                         const float* weight, const cpu::GroupNormShape& shape, float* dx,
                         float* grad_weight, float* grad_bias) {
  // No values: no dx, and the parameter gradients gain nothing.
  if (shape.numel() == 0) return;
  const int64_t rows = shape.rows();
  const int64_t groups = shape.groups;
  const int64_t channels_per_group = shape.channels_per_group();

  Scratch row_coef(sizeof(float) * 2 * rows);
  norm::reduce_per_channel(x, dy, rows_view(shape),
                           GroupBackwardRowOp{mean, invstd, weight, groups, channels_per_group,
                                              IndexDivider(shape.spatial), shape.row_size(), rows,
                                              row_coef.as<float>()});
  norm::launch_affine<true>(x, dy, dx, planes_view(shape),
                            GroupBackwardCoef{mean, invstd, weight, row_coef.as<float>(), rows,
                                              IndexDivider(channels_per_group)});
  if (grad_weight || grad_bias) {
    norm::reduce_per_channel(
        x, dy, planes_view(shape),
        GroupParamGradOp{mean, invstd, groups, channels_per_group, grad_weight, grad_bias});
  }
}

void instance_norm_update_running_stats(const float* mean, const float* invstd, int64_t batch,
                                        int64_t channels, int64_t spatial, double eps,
                                        double momentum, float* running_mean, float* running_var) {
  if (batch == 0 || channels == 0) return;
  launch(instance_norm_running_stats_kernel, dim3(blocks_for(channels)), dim3(kThreads), mean,
         invstd, batch, channels, spatial, eps, momentum, running_mean, running_var);
}

}  // namespace syncbn::cuda
