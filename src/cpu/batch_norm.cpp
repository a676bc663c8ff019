#include "cpu/batch_norm.h"

#include <algorithm>
#include <cmath>

#include "util/math.h"

namespace syncbn::cpu {

namespace {

// Below this many elements a kernel runs on the calling thread: waking the OpenMP team costs more
// than the work.
constexpr int64_t kParallelElements = 1 << 15;

// Channels-last reductions: each task owns a block of channels (one cache line of floats) and
// walks every row (n, s) in order, so the sums do not depend on the number of threads.
constexpr int64_t kChannelBlock = 16;

// Channels-last elementwise kernels: a task owns a chunk of rows and computes the per-channel
// coefficients of a block of channels once per chunk, on the stack.
constexpr int64_t kRowChunk = 64;
constexpr int64_t kCoefficientBlock = 256;

// Per-channel coefficients of an affine map of x and dy shared by the elementwise kernels:
//   out = a * dy + b * (x - mean) + c   (forward: dy is absent, a = 0).
struct ElemtCoefficients {
  float mean, a, b, c;
};

ElemtCoefficients forward_coefficients(const float* mean, const float* invstd, const float* weight,
                                       const float* bias, int64_t c) {
  const float gamma = weight ? weight[c] : 1.0f;
  return {mean[c], 0.0f, gamma * invstd[c], bias ? bias[c] : 0.0f};
}

// dx = gamma invstd dy - gamma invstd^2 (sum_dy_xhat/n) (x - mean) - gamma invstd (sum_dy/n),
// which is gamma * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat) expanded per channel.
ElemtCoefficients backward_coefficients(const float* mean, const float* invstd, const float* weight,
                                        const double* sums, int64_t channels, int64_t c) {
  const double gamma = weight ? weight[c] : 1.0;
  const double r = invstd[c];
  if (!sums) return {mean[c], static_cast<float>(gamma * r), 0.0f, 0.0f};
  const double count = sums[2 * channels];
  const double mean_dy = sums[c] / count;
  const double mean_dy_xhat = sums[channels + c] / count;
  return {mean[c], static_cast<float>(gamma * r), static_cast<float>(-gamma * r * r * mean_dy_xhat),
          static_cast<float>(-gamma * r * mean_dy)};
}

// out = a * dy + b * (x - mean) + c over x viewed as `shape`, (N, C, S) or (N, S, C). dy may be
// null (forward). make(c) gives channel c's coefficients.
template <class MakeCoefficients>
void apply_elemt(const float* x, const float* dy, const BatchNormShape& shape, float* out,
                 MakeCoefficients make) {
  const int64_t batch = shape.batch, channels = shape.channels, spatial = shape.spatial;
  const int64_t numel = shape.numel();
  if (!shape.channels_last) {
    // One task per (n, c) plane of S contiguous values.
#pragma omp parallel for schedule(static) if (numel >= kParallelElements)
    for (int64_t plane = 0; plane < batch * channels; ++plane) {
      const ElemtCoefficients k = make(plane % channels);
      const float* xp = x + plane * spatial;
      float* op = out + plane * spatial;
      if (dy) {
        const float* dyp = dy + plane * spatial;
        for (int64_t s = 0; s < spatial; ++s) op[s] = k.a * dyp[s] + k.b * (xp[s] - k.mean) + k.c;
      } else {
        for (int64_t s = 0; s < spatial; ++s) op[s] = k.b * (xp[s] - k.mean) + k.c;
      }
    }
    return;
  }
  const int64_t rows = batch * spatial;
#pragma omp parallel for schedule(static) if (numel >= kParallelElements)
  for (int64_t chunk = 0; chunk < ceil_div(rows, kRowChunk); ++chunk) {
    const int64_t r0 = chunk * kRowChunk;
    const int64_t r1 = std::min(rows, r0 + kRowChunk);
    float mean[kCoefficientBlock], a[kCoefficientBlock], b[kCoefficientBlock], c[kCoefficientBlock];
    for (int64_t c0 = 0; c0 < channels; c0 += kCoefficientBlock) {
      const int64_t width = std::min(kCoefficientBlock, channels - c0);
      for (int64_t j = 0; j < width; ++j) {
        const ElemtCoefficients k = make(c0 + j);
        mean[j] = k.mean;
        a[j] = k.a;
        b[j] = k.b;
        c[j] = k.c;
      }
      for (int64_t r = r0; r < r1; ++r) {
        const float* xp = x + r * channels + c0;
        float* op = out + r * channels + c0;
        if (dy) {
          const float* dyp = dy + r * channels + c0;
          for (int64_t j = 0; j < width; ++j)
            op[j] = a[j] * dyp[j] + b[j] * (xp[j] - mean[j]) + c[j];
        } else {
          for (int64_t j = 0; j < width; ++j) op[j] = b[j] * (xp[j] - mean[j]) + c[j];
        }
      }
    }
  }
}

// Per-channel double sums of f(x, dy) over x viewed as `shape`, (N, C, S) or (N, S, C):
// accumulate(c, x_value, dy_value, acc0, acc1) adds to the channel's two accumulators, and
// store(c, acc0, acc1) receives the totals. dy may be null.
template <class Accumulate, class Store>
void reduce_per_channel(const float* x, const float* dy, const BatchNormShape& shape,
                        Accumulate accumulate, Store store) {
  const int64_t batch = shape.batch, channels = shape.channels, spatial = shape.spatial;
  const int64_t numel = shape.numel();
  if (!shape.channels_last) {
#pragma omp parallel for schedule(static) if (numel >= kParallelElements)
    for (int64_t c = 0; c < channels; ++c) {
      double acc0 = 0.0, acc1 = 0.0;
      for (int64_t n = 0; n < batch; ++n) {
        const float* xp = x + (n * channels + c) * spatial;
        const float* dyp = dy ? dy + (n * channels + c) * spatial : nullptr;
        double part0 = 0.0, part1 = 0.0;
#pragma omp simd reduction(+ : part0, part1)
        for (int64_t s = 0; s < spatial; ++s) {
          accumulate(c, xp[s], dyp ? dyp[s] : 0.0f, part0, part1);
        }
        acc0 += part0;
        acc1 += part1;
      }
      store(c, acc0, acc1);
    }
    return;
  }
  const int64_t rows = batch * spatial;
#pragma omp parallel for schedule(static) if (numel >= kParallelElements)
  for (int64_t block = 0; block < ceil_div(channels, kChannelBlock); ++block) {
    const int64_t c0 = block * kChannelBlock;
    const int64_t width = std::min(kChannelBlock, channels - c0);
    double acc0[kChannelBlock] = {}, acc1[kChannelBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* xp = x + r * channels + c0;
      const float* dyp = dy ? dy + r * channels + c0 : nullptr;
      for (int64_t j = 0; j < width; ++j) {
        accumulate(c0 + j, xp[j], dyp ? dyp[j] : 0.0f, acc0[j], acc1[j]);
      }
    }
    for (int64_t j = 0; j < width; ++j) store(c0 + j, acc0[j], acc1[j]);
  }
}

}  // namespace

void batch_norm_stats(const float* x, const float* shift, const BatchNormShape& shape,
                      double* stats) {
  const int64_t channels = shape.channels;
  reduce_per_channel(
      x, nullptr, shape,
      [shift](int64_t c, float value, float, double& s1, double& s2) {
        const double d = static_cast<double>(value) - (shift ? shift[c] : 0.0);
        s1 += d;
        s2 += d * d;
      },
      [stats, channels](int64_t c, double s1, double s2) {
        stats[c] = s1;
        stats[channels + c] = s2;
      });
  stats[2 * channels] = static_cast<double>(shape.count());
}

void batch_norm_finalize(const double* packed, const float* shift, int64_t channels, double eps,
                         float* mean, float* invstd, float* running_mean, float* running_var,
                         float* num_batches_tracked, double momentum, bool cumulative_average) {
  const double n = packed[2 * channels];
  double factor = momentum;
  if (running_mean) {
    if (num_batches_tracked) num_batches_tracked[0] += 1.0f;
    if (cumulative_average) factor = 1.0 / num_batches_tracked[0];
  }
  for (int64_t c = 0; c < channels; ++c) {
    const double shifted_mean = packed[c] / n;  // mean - K
    const double channel_mean = (shift ? shift[c] : 0.0) + shifted_mean;
    // Rounding can make a zero variance slightly negative.
    const double var = std::max(packed[channels + c] / n - shifted_mean * shifted_mean, 0.0);
    mean[c] = static_cast<float>(channel_mean);
    invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
    if (running_mean) {
      running_mean[c] =
          static_cast<float>((1.0 - factor) * running_mean[c] + factor * channel_mean);
      running_var[c] =
          static_cast<float>((1.0 - factor) * running_var[c] + factor * var * n / (n - 1.0));
    }
  }
}

void batch_norm_invstd(const float* var, int64_t channels, double eps, float* invstd) {
  for (int64_t c = 0; c < channels; ++c) {
    invstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
  }
}

void batch_norm_elemt(const float* x, const float* mean, const float* invstd, const float* weight,
                      const float* bias, const BatchNormShape& shape, float* y) {
  apply_elemt(x, nullptr, shape, y,
              [&](int64_t c) { return forward_coefficients(mean, invstd, weight, bias, c); });
}

void batch_norm_backward_reduce(const float* dy, const float* x, const float* mean,
                                const float* invstd, const BatchNormShape& shape, double* sums,
                                float* grad_weight, float* grad_bias) {
  const int64_t channels = shape.channels;
  reduce_per_channel(
      x, dy, shape,
      [mean](int64_t c, float value, float grad, double& sum_dy, double& sum_dy_xmu) {
        sum_dy += grad;
        sum_dy_xmu += static_cast<double>(grad) * (static_cast<double>(value) - mean[c]);
      },
      [&](int64_t c, double sum_dy, double sum_dy_xmu) {
        const double sum_dy_xhat = sum_dy_xmu * invstd[c];
        if (sums) {
          sums[c] = sum_dy;
          sums[channels + c] = sum_dy_xhat;
        }
        if (grad_weight) grad_weight[c] += static_cast<float>(sum_dy_xhat);
        if (grad_bias) grad_bias[c] += static_cast<float>(sum_dy);
      });
}

void batch_norm_backward_elemt(const float* dy, const float* x, const float* mean,
                               const float* invstd, const float* weight, const double* sums,
                               const BatchNormShape& shape, float* dx) {
  const int64_t channels = shape.channels;
  apply_elemt(x, dy, shape, dx, [&](int64_t c) {
    return backward_coefficients(mean, invstd, weight, sums, channels, c);
  });
}

}  // namespace syncbn::cpu
