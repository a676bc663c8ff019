// Batch normalisation kernels (CUDA). The math is stated in cpu/batch_norm.h; the reduction and
// elementwise machinery (and its precision and determinism) in cuda/norm_common.cuh and
// cuda/norm_affine.cuh.
//
// A training step runs, per layer:
//   forward:  batch_norm_stats   (reads x once)           -> [s1, s2] per channel, double
//             batch_norm_finalize (one thread per channel) -> mean, invstd, running stats
//             batch_norm_elemt   (reads x, writes y)
//   backward: batch_norm_backward_reduce (reads dy, x)    -> [sum_dy, sum_dy_xhat], dgamma, dbeta
//             batch_norm_backward_elemt  (reads dy, x, writes dx)
// which is the minimal traffic; a synchronised BN allreduces the packed buffers in between.
#include "cuda/batch_norm.h"
#include "cuda/norm_affine.cuh"
#include "cuda/norm_common.cuh"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

using norm::Affine;

// Shifted sums. Each channel is summed relative to its first value L_c (x[c*S] in NCHW, x[c] in
// channels-last): d = x - L is exact or nearly so in fp32 for values near the data, so
// (d, d^2) keep the digits of the variance even when |mean| >> std. finish moves the double
// totals to the caller's shift K:
//   s1 = sum(d) + n (L - K),   s2 = sum(d^2) + (L - K) (2 sum(d) + n (L - K)).
struct StatsOp {
  static constexpr bool kHasDy = false;
  using Channel = float;

  const float* x;
  int64_t first_stride;  // channel c's first value is x[c * first_stride]
  const float* shift;    // K, may be null (K = 0)
  double count;          // n = N * S
  double* stats;         // [s1(C), s2(C)]
  int64_t channels;

  template <class Index>
  __device__ float channel(Index c) const {
    return __ldg(x + static_cast<int64_t>(c) * first_stride);
  }
  template <class Index>
  __device__ float2 element(float first, Index, Index, Index, float value, float) const {
    const float d = value - first;
    return make_float2(d, d * d);
  }
  template <class Index>
  __device__ void finish(Index c, double sum_d, double sum_d2) const {
    const double delta = static_cast<double>(channel(c)) - (shift ? shift[c] : 0.0);
    stats[c] = sum_d + count * delta;
    stats[channels + c] = sum_d2 + delta * (2.0 * sum_d + count * delta);
  }
};

// sum_dy = sum(dy), sum_dy_xmu = sum(dy * (x - mean)); finish: sum_dy_xhat = sum_dy_xmu * invstd.
struct BackwardReduceOp {
  static constexpr bool kHasDy = true;
  using Channel = float;

  const float* mean;
  const float* invstd;
  double* sums;  // [sum_dy(C), sum_dy_xhat(C)], may be null
  float* grad_weight;
  float* grad_bias;
  int64_t channels;

  template <class Index>
  __device__ float channel(Index c) const {
    return __ldg(mean + c);
  }
  template <class Index>
  __device__ float2 element(float channel_mean, Index, Index, Index, float value, float dy) const {
    return make_float2(dy, dy * (value - channel_mean));
  }
  template <class Index>
  __device__ void finish(Index c, double sum_dy, double sum_dy_xmu) const {
    const double sum_dy_xhat = sum_dy_xmu * static_cast<double>(invstd[c]);
    if (sums) {
      sums[c] = sum_dy;
      sums[channels + c] = sum_dy_xhat;
    }
    if (grad_weight) grad_weight[c] += static_cast<float>(sum_dy_xhat);
    if (grad_bias) grad_bias[c] += static_cast<float>(sum_dy);
  }
};

// Per-channel coefficients of the elementwise kernels, structure of arrays
// coef = [mean(C), a(C), b(C), c(C)], so that channels-last units load them as float4.
struct ChannelCoef {
  const float* coef;
  int64_t channels;

  template <class Index>
  __device__ Affine at(Index, Index c) const {
    return {__ldg(coef + c), __ldg(coef + channels + c), __ldg(coef + 2 * channels + c),
            __ldg(coef + 3 * channels + c)};
  }
  template <int kVec, class Index>
  __device__ void lanes(Index plane0, Index c0, Affine (&k)[kVec]) const {
    if constexpr (kVec == 4) {
      // channels % 4 == 0 and c0 % 4 == 0 here, and coef is allocator memory: 16-byte aligned.
      const float4 m = load_float4_readonly(coef + c0);
      const float4 a = load_float4_readonly(coef + channels + c0);
      const float4 b = load_float4_readonly(coef + 2 * channels + c0);
      const float4 c = load_float4_readonly(coef + 3 * channels + c0);
      k[0] = {m.x, a.x, b.x, c.x};
      k[1] = {m.y, a.y, b.y, c.y};
      k[2] = {m.z, a.z, b.z, c.z};
      k[3] = {m.w, a.w, b.w, c.w};
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) k[j] = at(plane0, static_cast<Index>(c0 + j));
    }
  }
};

// Thread c: the forward coefficients of channel c, as cpu::forward_coefficients:
//   mean_c, a = 0, b = gamma_c * invstd_c (fp32), c = beta_c.
__global__ void forward_coefficients_kernel(const float* __restrict__ mean,
                                            const float* __restrict__ invstd,
                                            const float* __restrict__ weight,
                                            const float* __restrict__ bias, int64_t channels,
                                            float* __restrict__ coef) {
  for (int64_t c : grid_stride(channels)) {
    const float gamma = weight ? weight[c] : 1.0f;
    coef[c] = mean[c];
    coef[channels + c] = 0.0f;
    coef[2 * channels + c] = __fmul_rn(gamma, invstd[c]);
    coef[3 * channels + c] = bias ? bias[c] : 0.0f;
  }
}

// Thread c: the backward coefficients of channel c, as cpu::backward_coefficients, in double:
//   dx = gamma r dy - gamma r^2 (sum_dy_xhat / n) (x - mean) - gamma r (sum_dy / n),  r = invstd,
// which is gamma * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat); sums == null: gamma r dy.
__global__ void backward_coefficients_kernel(const float* __restrict__ mean,
                                             const float* __restrict__ invstd,
                                             const float* __restrict__ weight,
                                             const double* __restrict__ sums, int64_t channels,
                                             float* __restrict__ coef) {
  for (int64_t c : grid_stride(channels)) {
    const double gamma = weight ? weight[c] : 1.0;
    const double r = invstd[c];
    coef[c] = mean[c];
    coef[channels + c] = static_cast<float>(gamma * r);
    if (sums) {
      const double count = sums[2 * channels];  // the forward's total n, left in the buffer
      const double mean_dy = sums[c] / count;
      const double mean_dy_xhat = sums[channels + c] / count;
      coef[2 * channels + c] = static_cast<float>(-gamma * r * r * mean_dy_xhat);
      coef[3 * channels + c] = static_cast<float>(-gamma * r * mean_dy);
    } else {
      coef[2 * channels + c] = 0.0f;
      coef[3 * channels + c] = 0.0f;
    }
  }
}

// One thread: *at = value (the count n_r after the sums of batch_norm_stats).
__global__ void store_kernel(double* at, double value) { *at = value; }

// One thread: num_batches_tracked += 1 (queued before finalize_kernel, which reads it).
__global__ void increment_kernel(float* counter) { counter[0] += 1.0f; }

// Thread c: channel c of cpu::batch_norm_finalize, in double:
//   mean = K + S1/n, var = max(S2/n - (S1/n)^2, 0), invstd = 1/sqrt(var + eps),
//   running_mean = (1 - f) running_mean + f mean, running_var = (1 - f) running_var + f var n/(n-1)
// with f = momentum or 1/num_batches_tracked. K_c is read before running_mean_c is written by
// the same thread, so shift may alias running_mean.
__global__ void finalize_kernel(const double* __restrict__ packed, const float* shift,
                                int64_t channels, double eps, float* __restrict__ mean,
                                float* __restrict__ invstd, float* running_mean,
                                float* __restrict__ running_var,
                                const float* __restrict__ num_batches_tracked, double momentum,
                                bool cumulative_average) {
  const double n = packed[2 * channels];
  for (int64_t c : grid_stride(channels)) {
    const double shifted_mean = packed[c] / n;  // mean - K
    const double channel_mean = (shift ? shift[c] : 0.0) + shifted_mean;
    const double biased = packed[channels + c] / n - shifted_mean * shifted_mean;
    // Rounding can make a zero variance slightly negative (NaN passes through, as on the CPU).
    const double var = biased < 0.0 ? 0.0 : biased;
    mean[c] = static_cast<float>(channel_mean);
    invstd[c] = static_cast<float>(1.0 / sqrt(var + eps));
    if (running_mean) {
      const double factor =
          cumulative_average ? 1.0 / static_cast<double>(num_batches_tracked[0]) : momentum;
      running_mean[c] =
          static_cast<float>((1.0 - factor) * running_mean[c] + factor * channel_mean);
      running_var[c] =
          static_cast<float>((1.0 - factor) * running_var[c] + factor * var * n / (n - 1.0));
    }
  }
}

// Thread c: invstd_c = 1/sqrt(var_c + eps).
__global__ void invstd_kernel(const float* __restrict__ var, int64_t channels, double eps,
                              float* __restrict__ invstd) {
  for (int64_t c : grid_stride(channels)) {
    invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[c]) + eps));
  }
}

}  // namespace

void batch_norm_stats(const float* x, const float* shift, const cpu::BatchNormShape& shape,
                      double* stats) {
  const int64_t channels = shape.channels;
  const double count = static_cast<double>(shape.count());
  if (shape.count() == 0) {
    SYNCBN_CUDA_CHECK(cudaMemsetAsync(stats, 0, sizeof(double) * (2 * channels + 1), stream()));
    return;
  }
  if (channels > 0) {
    const int64_t first_stride = shape.channels_last ? 1 : shape.spatial;
    const StatsOp op{x, first_stride, shift, count, stats, channels};
    norm::reduce_per_channel(x, nullptr, shape, op);
  }
  launch(store_kernel, dim3(1), dim3(1), stats + 2 * channels, count);
}

void batch_norm_finalize(const double* packed, const float* shift, int64_t channels, double eps,
                         float* mean, float* invstd, float* running_mean, float* running_var,
                         float* num_batches_tracked, double momentum, bool cumulative_average) {
  if (running_mean && num_batches_tracked) {
    launch(increment_kernel, dim3(1), dim3(1), num_batches_tracked);
  }
  if (channels == 0) return;
  launch(finalize_kernel, dim3(blocks_for(channels)), dim3(kThreads), packed, shift, channels, eps,
         mean, invstd, running_mean, running_var, static_cast<const float*>(num_batches_tracked),
         momentum, cumulative_average);
}

void batch_norm_invstd(const float* var, int64_t channels, double eps, float* invstd) {
  if (channels == 0) return;
  launch(invstd_kernel, dim3(blocks_for(channels)), dim3(kThreads), var, channels, eps, invstd);
}

void batch_norm_elemt(const float* x, const float* mean, const float* invstd, const float* weight,
                      const float* bias, const cpu::BatchNormShape& shape, float* y) {
  if (shape.numel() == 0) return;
  const int64_t channels = shape.channels;
  Scratch coef(sizeof(float) * 4 * channels);
  launch(forward_coefficients_kernel, dim3(blocks_for(channels)), dim3(kThreads), mean, invstd,
         weight, bias, channels, coef.as<float>());
  norm::launch_affine<false>(x, nullptr, y, shape, ChannelCoef{coef.as<float>(), channels});
}

void batch_norm_backward_reduce(const float* dy, const float* x, const float* mean,
                                const float* invstd, const cpu::BatchNormShape& shape, double* sums,
                                float* grad_weight, float* grad_bias) {
  const int64_t channels = shape.channels;
  if (channels == 0) return;
  if (shape.count() == 0) {
    // Zero sums; the parameter gradients gain nothing.
    if (sums) SYNCBN_CUDA_CHECK(cudaMemsetAsync(sums, 0, sizeof(double) * 2 * channels, stream()));
    return;
  }
  if (!sums && !grad_weight && !grad_bias) return;
  const BackwardReduceOp op{mean, invstd, sums, grad_weight, grad_bias, channels};
  norm::reduce_per_channel(x, dy, shape, op);
}

void batch_norm_backward_elemt(const float* dy, const float* x, const float* mean,
                               const float* invstd, const float* weight, const double* sums,
                               const cpu::BatchNormShape& shape, float* dx) {
  if (shape.numel() == 0) return;
  const int64_t channels = shape.channels;
  Scratch coef(sizeof(float) * 4 * channels);
  launch(backward_coefficients_kernel, dim3(blocks_for(channels)), dim3(kThreads), mean, invstd,
         weight, sums, channels, coef.as<float>());
  norm::launch_affine<true>(x, dy, dx, shape, ChannelCoef{coef.as<float>(), channels});
}

}  // namespace syncbn::cuda
