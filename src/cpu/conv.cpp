#include "cpu/conv.h"

#include <algorithm>
#include <cstring>

namespace syncbn::cpu {

namespace {

// Below this many elements moved, one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The outputs o in [begin, end) whose input index o * stride - padding + offset lies in
// [0, size); outside it the window reads padding.
struct ValidRange {
  int64_t begin, end;
};
ValidRange valid_outputs(int64_t size, int64_t out_size, int64_t offset, int64_t stride,
                         int64_t padding) {
  const int64_t end = std::min(out_size, ceil_div(std::max<int64_t>(0, size + padding - offset), stride));
  const int64_t begin = std::min(end, ceil_div(std::max<int64_t>(0, padding - offset), stride));
  return {begin, end};
}

}  // namespace

void im2col(const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
            int64_t out_width, float* columns) {
  const int64_t plane = out_height * out_width;
  const int64_t row_length = batch * plane;  // the stride between rows of `columns`
  const int64_t total = channels * kernel * kernel * row_length;
  // Each (n, c) writes its own K*K row segments of P entries.
#pragma omp parallel for collapse(2) schedule(static) if (total >= kParallelThreshold)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* image = x + (n * channels + c) * height * width;
      for (int64_t kh = 0; kh < kernel; ++kh) {
        const ValidRange rows = valid_outputs(height, out_height, kh, stride, padding);
        for (int64_t kw = 0; kw < kernel; ++kw) {
          const ValidRange cols = valid_outputs(width, out_width, kw, stride, padding);
          float* dst = columns + ((c * kernel + kh) * kernel + kw) * row_length + n * plane;
          std::fill(dst, dst + rows.begin * out_width, 0.0f);
          for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
            const float* src = image + (oh * stride - padding + kh) * width - padding + kw;
            float* out = dst + oh * out_width;
            std::fill(out, out + cols.begin, 0.0f);
            if (stride == 1) {
              std::memcpy(out + cols.begin, src + cols.begin,
                          static_cast<std::size_t>(cols.end - cols.begin) * sizeof(float));
            } else {
              for (int64_t ow = cols.begin; ow < cols.end; ++ow) out[ow] = src[ow * stride];
            }
            std::fill(out + cols.end, out + out_width, 0.0f);
          }
          std::fill(dst + rows.end * out_width, dst + plane, 0.0f);
        }
      }
    }
  }
}

void col2im(const float* columns, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
            int64_t out_width, float* dx) {
  const int64_t plane = out_height * out_width;
  const int64_t row_length = batch * plane;
  const int64_t total = channels * kernel * kernel * row_length;
  // Each (n, c) owns its dx plane: no two threads add into the same element.
#pragma omp parallel for collapse(2) schedule(static) if (total >= kParallelThreshold)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      float* image = dx + (n * channels + c) * height * width;
      std::fill(image, image + height * width, 0.0f);
      for (int64_t kh = 0; kh < kernel; ++kh) {
        const ValidRange rows = valid_outputs(height, out_height, kh, stride, padding);
        for (int64_t kw = 0; kw < kernel; ++kw) {
          const ValidRange cols = valid_outputs(width, out_width, kw, stride, padding);
          const float* src = columns + ((c * kernel + kh) * kernel + kw) * row_length + n * plane;
          for (int64_t oh = rows.begin; oh < rows.end; ++oh) {
            float* out = image + (oh * stride - padding + kh) * width - padding + kw;
            const float* in = src + oh * out_width;
            if (stride == 1) {
              for (int64_t ow = cols.begin; ow < cols.end; ++ow) out[ow] += in[ow];
            } else {
              for (int64_t ow = cols.begin; ow < cols.end; ++ow) out[ow * stride] += in[ow];
            }
          }
        }
      }
    }
  }
}

void cnhw_to_nchw_add_bias(const float* src, const float* bias, int64_t batch, int64_t channels,
                           int64_t plane, float* y) {
  const int64_t row_length = batch * plane;
#pragma omp parallel for collapse(2) schedule(static) if (batch * channels * plane >= kParallelThreshold)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* in = src + c * row_length + n * plane;
      float* out = y + (n * channels + c) * plane;
      if (bias) {
        const float b = bias[c];
        for (int64_t i = 0; i < plane; ++i) out[i] = in[i] + b;
      } else {
        std::memcpy(out, in, static_cast<std::size_t>(plane) * sizeof(float));
      }
    }
  }
}

void nchw_to_cnhw_sum_channels(const float* src, int64_t batch, int64_t channels, int64_t plane,
                               float* dst, float* channel_sum) {
  const int64_t row_length = batch * plane;
  // Each c owns its dst row and its channel_sum entry.
#pragma omp parallel for schedule(static) if (batch * channels * plane >= kParallelThreshold)
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      const float* in = src + (n * channels + c) * plane;
      float* out = dst + c * row_length + n * plane;
      if (channel_sum) {
        float partial = 0.0f;  // one plane in float, planes summed in double
#pragma omp simd reduction(+ : partial)
        for (int64_t i = 0; i < plane; ++i) {
          out[i] = in[i];
          partial += in[i];
        }
        sum += partial;
      } else {
        std::memcpy(out, in, static_cast<std::size_t>(plane) * sizeof(float));
      }
    }
    if (channel_sum) channel_sum[c] += static_cast<float>(sum);
  }
}

}  // namespace syncbn::cpu
