#include "cpu/group_norm.h"

#include <algorithm>
#include <cmath>

namespace syncbn::cpu {

namespace {

// Below this many elements a kernel runs on the calling thread.
constexpr int64_t kParallelElements = 1 << 15;
// The parameter-gradient reduction: each task owns a block of channels and walks every sample in
// order, so the sums do not depend on the number of threads.
constexpr int64_t kChannelBlock = 16;

}  // namespace

void group_norm_forward(const float* x, const float* weight, const float* bias,
                        const GroupNormShape& shape, double eps, float* y, float* mean,
                        float* invstd) {
  const int64_t spatial = shape.spatial, groups = shape.groups;
  const int64_t channels_per_group = shape.channels_per_group();
  const int64_t row_size = shape.row_size();
  const int64_t rows = shape.rows();
  // One task per row (n, g): x + (n*C + g*C/G)*S = x + (n*G + g)*D.
#pragma omp parallel for schedule(static) if (shape.numel() >= kParallelElements)
  for (int64_t row = 0; row < rows; ++row) {
    const float* xr = x + row * row_size;
    float* yr = y + row * row_size;
    // Shifted sums in double, shift = the row's first value (near the mean in scale): the
    // variance keeps its digits even when |mean| >> std.
    const double shift = row_size > 0 ? xr[0] : 0.0;
    double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t i = 0; i < row_size; ++i) {
      const double d = static_cast<double>(xr[i]) - shift;
      s1 += d;
      s2 += d * d;
    }
    const double count = static_cast<double>(std::max<int64_t>(row_size, 1));
    const double shifted_mean = s1 / count;
    const double var = std::max(s2 / count - shifted_mean * shifted_mean, 0.0);
    const float row_mean = static_cast<float>(shift + shifted_mean);
    const float row_invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[row] = row_mean;
    invstd[row] = row_invstd;

    const int64_t first_channel = (row % groups) * channels_per_group;
    for (int64_t j = 0; j < channels_per_group; ++j) {
      const int64_t c = first_channel + j;
      const float scale = row_invstd * (weight ? weight[c] : 1.0f);
      const float shift_out = bias ? bias[c] : 0.0f;
      const float* xp = xr + j * spatial;
      float* yp = yr + j * spatial;
      for (int64_t s = 0; s < spatial; ++s) yp[s] = (xp[s] - row_mean) * scale + shift_out;
    }
  }
}

void group_norm_backward(const float* dy, const float* x, const float* mean, const float* invstd,
                         const float* weight, const GroupNormShape& shape, float* dx,
                         float* grad_weight, float* grad_bias) {
  const int64_t batch = shape.batch, channels = shape.channels, spatial = shape.spatial;
  const int64_t groups = shape.groups;
  const int64_t channels_per_group = shape.channels_per_group();
  const int64_t row_size = shape.row_size();
  const int64_t rows = shape.rows();
  const bool parallel = shape.numel() >= kParallelElements;

  // dx, one task per row (n, g).
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t first_channel = (row % groups) * channels_per_group;
    const float* xr = x + row * row_size;
    const float* dyr = dy + row * row_size;
    float* dxr = dx + row * row_size;
    const float row_mean = mean[row];
    const double r = invstd[row];
    // sum_g = sum(gamma dy), sum_gxmu = sum(gamma dy (x - mean)), in double.
    double sum_g = 0.0, sum_gxmu = 0.0;
    for (int64_t j = 0; j < channels_per_group; ++j) {
      const double gamma = weight ? weight[first_channel + j] : 1.0;
      double part_dy = 0.0, part_dy_xmu = 0.0;
      const float* xp = xr + j * spatial;
      const float* dyp = dyr + j * spatial;
#pragma omp simd reduction(+ : part_dy, part_dy_xmu)
      for (int64_t s = 0; s < spatial; ++s) {
        part_dy += dyp[s];
        part_dy_xmu += static_cast<double>(dyp[s]) * (static_cast<double>(xp[s]) - row_mean);
      }
      sum_g += gamma * part_dy;
      sum_gxmu += gamma * part_dy_xmu;
    }
    const double count = static_cast<double>(std::max<int64_t>(row_size, 1));
    // dx = invstd gamma dy - invstd^2 mean(g xhat) (x - mean) - invstd mean(g), with
    // mean(g xhat) = invstd * sum_gxmu / D.
    const float coefficient_xmu = static_cast<float>(-r * r * r * sum_gxmu / count);
    const float constant = static_cast<float>(-r * sum_g / count);
    for (int64_t j = 0; j < channels_per_group; ++j) {
      const float coefficient_dy =
          static_cast<float>(r * (weight ? weight[first_channel + j] : 1.0f));
      const float* xp = xr + j * spatial;
      const float* dyp = dyr + j * spatial;
      float* dxp = dxr + j * spatial;
      for (int64_t s = 0; s < spatial; ++s) {
        dxp[s] = coefficient_dy * dyp[s] + coefficient_xmu * (xp[s] - row_mean) + constant;
      }
    }
  }

  if (!grad_weight && !grad_bias) return;
    // grad_weight_c += sum dy * xhat, grad_bias_c += sum dy; one task per block of channels.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
    const int64_t width = std::min(kChannelBlock, channels - c0);
    double sum_dy_xhat[kChannelBlock] = {}, sum_dy[kChannelBlock] = {};
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t j = 0; j < width; ++j) {
        const int64_t c = c0 + j;
        const int64_t row = n * groups + c / channels_per_group;
        const float* xp = x + (n * channels + c) * spatial;
        const float* dyp = dy + (n * channels + c) * spatial;
        const double row_mean = mean[row];
        double part_dy = 0.0, part_dy_xmu = 0.0;
#pragma omp simd reduction(+ : part_dy, part_dy_xmu)
        for (int64_t s = 0; s < spatial; ++s) {
          part_dy += dyp[s];
          part_dy_xmu += static_cast<double>(dyp[s]) * (static_cast<double>(xp[s]) - row_mean);
        }
        sum_dy[j] += part_dy;
        sum_dy_xhat[j] += part_dy_xmu * invstd[row];
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      if (grad_weight) grad_weight[c0 + j] += static_cast<float>(sum_dy_xhat[j]);
      if (grad_bias) grad_bias[c0 + j] += static_cast<float>(sum_dy[j]);
    }
  }
}

void instance_norm_update_running_stats(const float* mean, const float* invstd, int64_t batch,
                                        int64_t channels, int64_t spatial, double eps,
                                        double momentum, float* running_mean, float* running_var) {
  const double unbiased = static_cast<double>(spatial) / static_cast<double>(spatial - 1);
  for (int64_t c = 0; c < channels; ++c) {
    double mean_sum = 0.0, var_sum = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      const double r = invstd[n * channels + c];
      mean_sum += mean[n * channels + c];
      var_sum += std::max(1.0 / (r * r) - eps, 0.0) * unbiased;
    }
    running_mean[c] =
        static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean_sum / batch);
    running_var[c] =
        static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var_sum / batch);
  }
}

}  // namespace syncbn::cpu
