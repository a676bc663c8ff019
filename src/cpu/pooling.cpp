#include "cpu/pooling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace syncbn::cpu {

namespace {

// Below this many input elements one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;

// One plane of max pooling with any window.
void max_pool_plane(const float* x, int64_t height, int64_t width, int64_t kernel, int64_t stride,
                    int64_t padding, int64_t out_height, int64_t out_width, float* y,
                    int32_t* indices) {
  for (int64_t oh = 0; oh < out_height; ++oh) {
    const int64_t h0 = oh * stride - padding;
    const int64_t h_begin = std::max<int64_t>(h0, 0);
    const int64_t h_end = std::min(h0 + kernel, height);
    for (int64_t ow = 0; ow < out_width; ++ow) {
      const int64_t w0 = ow * stride - padding;
      const int64_t w_begin = std::max<int64_t>(w0, 0);
      const int64_t w_end = std::min(w0 + kernel, width);
      float best = -std::numeric_limits<float>::infinity();
      int64_t best_index = h_begin * width + w_begin;
      for (int64_t ih = h_begin; ih < h_end; ++ih) {
        for (int64_t iw = w_begin; iw < w_end; ++iw) {
          const float v = x[ih * width + iw];
          if (v > best || std::isnan(v)) {
            best = v;
            best_index = ih * width + iw;
          }
        }
      }
      y[oh * out_width + ow] = best;
      indices[oh * out_width + ow] = static_cast<int32_t>(best_index);
    }
  }
}

// One plane of MaxPool2d(2): windows (2 oh + {0, 1}, 2 ow + {0, 1}), no padding. The same rule
// as above (a later element wins when greater or NaN), written as bit-mask selects: rows are
// short (14 outputs), so the scalar tail matters, and branches on ReLU outputs (many ties at 0)
// mispredict.
void max_pool_plane_2x2(const float* x, int64_t width, int64_t out_height, int64_t out_width,
                        float* y, int32_t* indices) {
  const auto take = [](float v, int32_t index, float& best, int32_t& best_index) {
    // All ones where v wins, else 0; both comparisons evaluated.
    const int32_t wins = -static_cast<int32_t>((v > best) | (v != v));
    best = std::bit_cast<float>((std::bit_cast<int32_t>(v) & wins) |
                                (std::bit_cast<int32_t>(best) & ~wins));
    best_index = (index & wins) | (best_index & ~wins);
  };
  for (int64_t oh = 0; oh < out_height; ++oh) {
    const float* row0 = x + 2 * oh * width;
    const float* row1 = row0 + width;
    float* out = y + oh * out_width;
    int32_t* index = indices + oh * out_width;
    const int32_t row_start = static_cast<int32_t>(2 * oh * width);
    const int32_t w = static_cast<int32_t>(width);
#pragma omp simd
    for (int64_t ow = 0; ow < out_width; ++ow) {
      const int32_t i = row_start + static_cast<int32_t>(2 * ow);
      float best = row0[2 * ow];
      int32_t best_index = i;
      take(row0[2 * ow + 1], i + 1, best, best_index);
      take(row1[2 * ow], i + w, best, best_index);
      take(row1[2 * ow + 1], i + w + 1, best, best_index);
      out[ow] = best;
      index[ow] = best_index;
    }
  }
}

}  // namespace

void max_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y, int32_t* indices) {
  const int64_t in_plane = height * width;
  const int64_t out_plane = out_height * out_width;
  const bool two_by_two = kernel == 2 && stride == 2 && padding == 0;
#pragma omp parallel for schedule(static) if (planes * in_plane >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * in_plane;
    float* out = y + p * out_plane;
    int32_t* index = indices + p * out_plane;
    if (two_by_two) {
      max_pool_plane_2x2(in, width, out_height, out_width, out, index);
    } else {
      max_pool_plane(in, height, width, kernel, stride, padding, out_height, out_width, out, index);
    }
  }
}

void max_pool2d_backward(const float* dy, const int32_t* indices, int64_t planes, int64_t height,
                         int64_t width, int64_t out_height, int64_t out_width, float* dx) {
  const int64_t in_plane = height * width;
  const int64_t out_plane = out_height * out_width;
  // Each plane is owned by one thread; windows never cross planes.
#pragma omp parallel for schedule(static) if (planes * in_plane >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    float* grad = dx + p * in_plane;
    std::fill(grad, grad + in_plane, 0.0f);
    const float* g = dy + p * out_plane;
    const int32_t* index = indices + p * out_plane;
    for (int64_t o = 0; o < out_plane; ++o) grad[index[o]] += g[o];
  }
}

void avg_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y) {
  const int64_t in_plane = height * width;
  const int64_t out_plane = out_height * out_width;
  const float inverse_area = 1.0f / static_cast<float>(kernel * kernel);
#pragma omp parallel for schedule(static) if (planes * in_plane >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * in_plane;
    float* out = y + p * out_plane;
    for (int64_t oh = 0; oh < out_height; ++oh) {
      const int64_t h0 = oh * stride - padding;
      const int64_t h_begin = std::max<int64_t>(h0, 0), h_end = std::min(h0 + kernel, height);
      for (int64_t ow = 0; ow < out_width; ++ow) {
        const int64_t w0 = ow * stride - padding;
        const int64_t w_begin = std::max<int64_t>(w0, 0), w_end = std::min(w0 + kernel, width);
        float sum = 0.0f;
        for (int64_t ih = h_begin; ih < h_end; ++ih) {
          for (int64_t iw = w_begin; iw < w_end; ++iw) sum += in[ih * width + iw];
        }
        out[oh * out_width + ow] = sum * inverse_area;
      }
    }
  }
}

void avg_pool2d_backward(const float* dy, int64_t planes, int64_t height, int64_t width,
                         int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                         int64_t out_width, float* dx) {
  const int64_t in_plane = height * width;
  const int64_t out_plane = out_height * out_width;
  const float inverse_area = 1.0f / static_cast<float>(kernel * kernel);
#pragma omp parallel for schedule(static) if (planes * in_plane >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    float* grad = dx + p * in_plane;
    std::fill(grad, grad + in_plane, 0.0f);
    const float* g = dy + p * out_plane;
    for (int64_t oh = 0; oh < out_height; ++oh) {
      const int64_t h0 = oh * stride - padding;
      const int64_t h_begin = std::max<int64_t>(h0, 0), h_end = std::min(h0 + kernel, height);
      for (int64_t ow = 0; ow < out_width; ++ow) {
        const int64_t w0 = ow * stride - padding;
        const int64_t w_begin = std::max<int64_t>(w0, 0), w_end = std::min(w0 + kernel, width);
        const float share = g[oh * out_width + ow] * inverse_area;
        for (int64_t ih = h_begin; ih < h_end; ++ih) {
          for (int64_t iw = w_begin; iw < w_end; ++iw) grad[ih * width + iw] += share;
        }
      }
    }
  }
}

void global_avg_pool2d_forward(const float* x, int64_t planes, int64_t plane_size, float* y) {
  const float inverse_size = 1.0f / static_cast<float>(plane_size);
#pragma omp parallel for schedule(static) if (planes * plane_size >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    const float* in = x + p * plane_size;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < plane_size; ++i) sum += in[i];
    y[p] = sum * inverse_size;
  }
}

void global_avg_pool2d_backward(const float* dy, int64_t planes, int64_t plane_size, float* dx) {
  const float inverse_size = 1.0f / static_cast<float>(plane_size);
#pragma omp parallel for schedule(static) if (planes * plane_size >= kParallelThreshold)
  for (int64_t p = 0; p < planes; ++p) {
    std::fill(dx + p * plane_size, dx + (p + 1) * plane_size, dy[p] * inverse_size);
  }
}

}  // namespace syncbn::cpu
