#include "cpu/elementwise.h"

#include <algorithm>
#include <vector>

namespace syncbn::cpu {

namespace {

// Below this many elements one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;

// SplitMix64's finaliser: a bijective mix whose every output bit depends on every input bit.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

void relu_forward(const float* x, int64_t n, float* y) {
  // NaN passes through (v != v), as in PyTorch. Both operands are loaded unconditionally so the
  // select compiles to a vector blend, not a branch.
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = (v > 0.0f || v != v) ? v : 0.0f;
  }
}

void relu_backward(const float* y, const float* dy, int64_t n, float* dx) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

void dropout_forward(const float* x, uint64_t seed, float p, int64_t n, float* mask, float* y) {
  // keep  <=>  hash >> 32 >= p * 2^32, which has probability 1 - p up to 2^-32.
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
  const float keep_scale = 1.0f / (1.0f - p);
  const uint64_t base = mix64(seed);
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t bits = mix64(base + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL);
    const float m = (bits >> 32) >= threshold ? keep_scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

void multiply(const float* a, const float* b, int64_t n, float* out) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

void add(const float* a, const float* b, int64_t n, float* out) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void axpy(float alpha, const float* x, int64_t n, float* y) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale(float alpha, int64_t n, float* x) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void broadcast_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y) {
#pragma omp parallel for collapse(2) \
    schedule(static) if (outer * channels * inner >= kParallelThreshold)
  for (int64_t i = 0; i < outer; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      float* out = y + (i * channels + c) * inner;
      std::fill(out, out + inner, bias[c]);
    }
  }
}

void add_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * channels >= kParallelThreshold)
    for (int64_t i = 0; i < outer; ++i) {
      float* row = y + i * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) row[c] += bias[c];
    }
    return;
  }
#pragma omp parallel for collapse(2) \
    schedule(static) if (outer * channels * inner >= kParallelThreshold)
  for (int64_t i = 0; i < outer; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      float* out = y + (i * channels + c) * inner;
      const float b = bias[c];
#pragma omp simd
      for (int64_t j = 0; j < inner; ++j) out[j] += b;
    }
  }
}

void bias_grad(const float* dy, int64_t outer, int64_t channels, int64_t inner, float* dbias) {
  if (inner == 1) {
    // Rows of a (batch, features) matrix: sum them in double, row by row (contiguous reads).
    std::vector<double> sum(static_cast<std::size_t>(channels), 0.0);
    for (int64_t i = 0; i < outer; ++i) {
      const float* row = dy + i * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) sum[c] += row[c];
    }
    for (int64_t c = 0; c < channels; ++c) dbias[c] += static_cast<float>(sum[c]);
    return;
  }
  // Each c owns dbias[c]: one plane summed in float (vectorised), planes summed in double.
#pragma omp parallel for schedule(static) if (outer * channels * inner >= kParallelThreshold)
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (int64_t i = 0; i < outer; ++i) {
      const float* plane = dy + (i * channels + c) * inner;
      float partial = 0.0f;
#pragma omp simd reduction(+ : partial)
      for (int64_t j = 0; j < inner; ++j) partial += plane[j];
      sum += partial;
    }
    dbias[c] += static_cast<float>(sum);
  }
}

}  // namespace syncbn::cpu
