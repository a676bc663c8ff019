#include "cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/blas.h"
#include "cpu/elementwise.h"
#include "syncbn/threads.h"
#include "util/math.h"

namespace syncbn::cpu {

namespace {

// Below this many elements moved, one thread is faster than the OpenMP fork/join.
constexpr int64_t kParallelThreshold = 1 << 15;
// A group has at least this many output positions (GEMM columns), when the batch allows.
constexpr int64_t kMinGroupColumns = 256;

// The outputs o in [begin, end) whose input index o * stride - padding + offset lies in
// [0, size); outside it the window reads padding.
struct ValidRange {
  int64_t begin, end;
};
ValidRange valid_outputs(int64_t size, int64_t out_size, int64_t offset, int64_t stride,
                         int64_t padding) {
  const int64_t end =
      std::min(out_size, ceil_div(std::max<int64_t>(0, size + padding - offset), stride));
  const int64_t begin = std::min(end, ceil_div(std::max<int64_t>(0, padding - offset), stride));
  return {begin, end};
}

// How the batch is cut into groups, and where each thread's buffers lie in the workspace.
struct Plan {
  int64_t plane, rows;     // P = Ho * Wo and C * K * K
  int64_t group;           // samples per group (B)
  int64_t groups;          // ceil(N / B)
  int64_t per_thread;      // workspace floats per thread
  int64_t columns_offset;  // (rows, B*P): columns of the group
  int64_t grad_offset;     // (rows, B*P): dL/dcolumns (backward)
  int64_t output_offset;   // (O, B*P): the group's output or dy in (O, B, P) order, if B > 1
  int64_t dweight_offset;  // (O, rows): this thread's partial weight gradient
};

Plan make_plan(const Conv2dShape& s) {
  Plan p{};
  p.plane = s.out_height * s.out_width;
  p.rows = s.in_channels * s.kernel * s.kernel;
  p.group = std::clamp<int64_t>(ceil_div(kMinGroupColumns, std::max<int64_t>(p.plane, 1)), 1,
                                std::max<int64_t>(s.batch, 1));
  p.groups = ceil_div(s.batch, p.group);
  const int64_t group_columns = p.group * p.plane;
  p.columns_offset = 0;
  p.grad_offset = p.rows * group_columns;
  p.output_offset = p.grad_offset + p.rows * group_columns;
  p.dweight_offset = p.output_offset + (p.group > 1 ? s.out_channels * group_columns : 0);
  // Round each thread's share up to a cache line, so threads never share one.
  p.per_thread = (p.dweight_offset + s.out_channels * p.rows + 15) / 16 * 16;
  return p;
}

}  // namespace

void conv2d_workspace_size(const Conv2dShape& shape, int64_t* floats) {
  *floats = make_plan(shape).per_thread * num_threads();
}

void conv2d_forward(const float* x, const float* weight, const float* bias, const Conv2dShape& s,
                    float* workspace, float* y) {
  const Plan p = make_plan(s);
  const int64_t in_sample = s.in_channels * s.height * s.width;
  const int64_t out_sample = s.out_channels * p.plane;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), p.groups));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    float* mine = workspace + omp_get_thread_num() * p.per_thread;
    float* columns = mine + p.columns_offset;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < p.groups; ++g) {
      const int64_t first = g * p.group;
      const int64_t count = std::min(p.group, s.batch - first);
      const int64_t cols = count * p.plane;
      float* out = y + first * out_sample;
      im2col(x + first * in_sample, count, s.in_channels, s.height, s.width, s.kernel, s.stride,
             s.padding, s.out_height, s.out_width, columns);
      if (count == 1) {
        // (O, P) is the sample's NCHW output: the GEMM adds into the broadcast bias.
        if (bias) broadcast_bias(bias, 1, s.out_channels, p.plane, out);
        gemm(false, false, s.out_channels, cols, p.rows, 1.0f, weight, p.rows, columns, cols,
             bias ? 1.0f : 0.0f, out, cols);
      } else {
        float* output = mine + p.output_offset;
        gemm(false, false, s.out_channels, cols, p.rows, 1.0f, weight, p.rows, columns, cols, 0.0f,
             output, cols);
        cnhw_to_nchw_add_bias(output, bias, count, s.out_channels, p.plane, out);
      }
    }
  }
}

void conv2d_backward(const float* x, const float* weight, const float* dy, const Conv2dShape& s,
                     float* workspace, float* dx, float* dweight, float* dbias) {
  const Plan p = make_plan(s);
  const int64_t in_sample = s.in_channels * s.height * s.width;
  const int64_t out_sample = s.out_channels * p.plane;
  const int64_t weight_size = s.out_channels * p.rows;
  if (dbias) bias_grad(dy, s.batch, s.out_channels, p.plane, dbias);
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), p.groups));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* mine = workspace + t * p.per_thread;
    float* columns = mine + p.columns_offset;
    float* grad_columns = mine + p.grad_offset;
    // One thread accumulates straight into dweight; several keep partials, summed below.
    float* partial = threads == 1 ? dweight : mine + p.dweight_offset;
    if (threads > 1) std::fill(partial, partial + weight_size, 0.0f);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < p.groups; ++g) {
      const int64_t first = g * p.group;
      const int64_t count = std::min(p.group, s.batch - first);
      const int64_t cols = count * p.plane;
      const float* dy_group = dy + first * out_sample;
      if (count > 1) {
        float* reordered = mine + p.output_offset;
        nchw_to_cnhw(dy_group, count, s.out_channels, p.plane, reordered);
        dy_group = reordered;
      }
      im2col(x + first * in_sample, count, s.in_channels, s.height, s.width, s.kernel, s.stride,
             s.padding, s.out_height, s.out_width, columns);
      // dweight (O, rows) += dy (O, cols) x columns^T (cols, rows)
      gemm(false, true, s.out_channels, p.rows, cols, 1.0f, dy_group, cols, columns, cols, 1.0f,
           partial, p.rows);
      // dcolumns (rows, cols) = weight^T (rows, O) x dy (O, cols)
      gemm(true, false, p.rows, cols, s.out_channels, 1.0f, weight, p.rows, dy_group, cols, 0.0f,
           grad_columns, cols);
      col2im(grad_columns, count, s.in_channels, s.height, s.width, s.kernel, s.stride, s.padding,
             s.out_height, s.out_width, dx + first * in_sample);
    }
    if (threads > 1) {
      // The implicit barrier of the loop above has made every partial complete.
#pragma omp for schedule(static)
      for (int64_t i = 0; i < weight_size; ++i) {
        float sum = 0.0f;
        for (int u = 0; u < threads; ++u) sum += workspace[u * p.per_thread + p.dweight_offset + i];
        dweight[i] += sum;
      }
    }
  }
}

void im2col(const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height, int64_t out_width,
            float* columns) {
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
            for (int64_t ow = 0; ow < cols.begin; ++ow) out[ow] = 0.0f;
            if (stride == 1) {
              // Rows are short (14, 28): an inline loop beats a memcpy call.
#pragma omp simd
              for (int64_t ow = cols.begin; ow < cols.end; ++ow) out[ow] = src[ow];
            } else {
              for (int64_t ow = cols.begin; ow < cols.end; ++ow) out[ow] = src[ow * stride];
            }
            for (int64_t ow = cols.end; ow < out_width; ++ow) out[ow] = 0.0f;
          }
          std::fill(dst + rows.end * out_width, dst + plane, 0.0f);
        }
      }
    }
  }
}

void col2im(const float* columns, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height, int64_t out_width,
            float* dx) {
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
#pragma omp simd
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
#pragma omp parallel for collapse(2) \
    schedule(static) if (batch * channels * plane >= kParallelThreshold)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* in = src + c * row_length + n * plane;
      float* out = y + (n * channels + c) * plane;
      const float b = bias ? bias[c] : 0.0f;
#pragma omp simd
      for (int64_t i = 0; i < plane; ++i) out[i] = in[i] + b;
    }
  }
}

void nchw_to_cnhw(const float* src, int64_t batch, int64_t channels, int64_t plane, float* dst) {
  const int64_t row_length = batch * plane;
#pragma omp parallel for collapse(2) \
    schedule(static) if (batch * channels * plane >= kParallelThreshold)
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      std::memcpy(dst + c * row_length + n * plane, src + (n * channels + c) * plane,
                  static_cast<std::size_t>(plane) * sizeof(float));
    }
  }
}

}  // namespace syncbn::cpu
