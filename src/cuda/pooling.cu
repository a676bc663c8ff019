// 2-D pooling on the GPU over planes (planes = N * C of an NCHW tensor), with the CPU kernels'
// rules: max pooling keeps the first maximum of each window (a NaN wins), average pooling counts
// padding as zeros. Max and average pooling, forward and backward, and the global average's
// backward add the same floats in the same order as the CPU kernels, so they agree bit for bit;
// the global average's forward sums in double (the CPU in float).
#include <cmath>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pooling.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

// The geometry of a pooling window, as in cpu/pooling.h.
struct Window {
  int64_t height, width, kernel, stride, padding, out_height, out_width;
};

// Each thread owns outputs e = (p, oh, ow) (grid-stride over planes * Ho * Wo). It scans its
// window [h0, h0 + K) x [w0, w0 + K) clipped to the image, row by row, keeping the first
// maximum (a later value wins when greater or NaN); y[e] = the maximum, indices[e] = ih * W + iw.
template <class Index>
__global__ void max_pool_forward_kernel(const float* x, Index total, Window w, float* y,
                                        int32_t* indices) {
  const Index out_width = static_cast<Index>(w.out_width);
  const Index out_height = static_cast<Index>(w.out_height);
  const int64_t in_plane = w.height * w.width;
  for (Index e : grid_stride(total)) {
    const Index ow = e % out_width;
    const Index rest = e / out_width;
    const Index oh = rest % out_height;
    const Index p = rest / out_height;
    const float* in = x + static_cast<int64_t>(p) * in_plane;
    const int64_t h0 = static_cast<int64_t>(oh) * w.stride - w.padding;
    const int64_t w0 = static_cast<int64_t>(ow) * w.stride - w.padding;
    const int64_t h_begin = max(h0, int64_t{0}), h_end = min(h0 + w.kernel, w.height);
    const int64_t w_begin = max(w0, int64_t{0}), w_end = min(w0 + w.kernel, w.width);
    float best = -INFINITY;
    int64_t best_index = h_begin * w.width + w_begin;
    for (int64_t ih = h_begin; ih < h_end; ++ih) {
      for (int64_t iw = w_begin; iw < w_end; ++iw) {
        const float v = in[ih * w.width + iw];
        if (v > best || isnan(v)) {
          best = v;
          best_index = ih * w.width + iw;
        }
      }
    }
    y[e] = best;
    indices[e] = static_cast<int32_t>(best_index);
  }
}

// One warp owns one plane of dx (grid-stride over planes): it zeroes the plane, then walks the
// plane's outputs 32 at a time, in order. Lanes whose outputs have the same argmax (overlapping
// windows) are grouped with __match_any_sync, and the group's lowest lane adds their dy to dx in
// lane order. So every dx element receives its dy values in increasing output order, as in the
// CPU loop `dx[indices[o]] += dy[o]`, without atomics: no other warp touches the plane.
__global__ void max_pool_backward_kernel(const float* dy, const int32_t* indices, int64_t planes,
                                         int64_t in_plane, int64_t out_plane, float* dx) {
  __shared__ float values[kWarpsPerBlock][32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t p : grid_stride_warps(planes)) {
    float* grad = dx + p * in_plane;
    const float* g = dy + p * out_plane;
    const int32_t* index = indices + p * out_plane;
    for (int64_t i = lane; i < in_plane; i += 32) grad[i] = 0.0f;
    __syncwarp();
    for (int64_t base = 0; base < out_plane; base += 32) {
      const int64_t o = base + lane;
      const bool active = o < out_plane;
      // Lanes past the end get distinct negative targets, so they never join a group.
      const int32_t target = active ? index[o] : -1 - lane;
      values[warp][lane] = active ? g[o] : 0.0f;
      const unsigned int group = __match_any_sync(0xffffffffu, target);
      __syncwarp();
      if (active && __ffs(group) - 1 == lane) {
        float sum = grad[target];
        for (unsigned int rest = group; rest != 0; rest &= rest - 1) {
          sum += values[warp][__ffs(rest) - 1];
        }
        grad[target] = sum;
      }
      __syncwarp();  // values is rewritten, and grad re-read by other lanes, in the next round
    }
  }
}

// Each thread owns outputs e = (p, oh, ow) (grid-stride): the sum over the clipped window, row
// by row, times 1 / (K * K) (padding counts as zeros).
template <class Index>
__global__ void avg_pool_forward_kernel(const float* x, Index total, Window w, float inverse_area,
                                        float* y) {
  const Index out_width = static_cast<Index>(w.out_width);
  const Index out_height = static_cast<Index>(w.out_height);
  const int64_t in_plane = w.height * w.width;
  for (Index e : grid_stride(total)) {
    const Index ow = e % out_width;
    const Index rest = e / out_width;
    const Index oh = rest % out_height;
    const Index p = rest / out_height;
    const float* in = x + static_cast<int64_t>(p) * in_plane;
    const int64_t h0 = static_cast<int64_t>(oh) * w.stride - w.padding;
    const int64_t w0 = static_cast<int64_t>(ow) * w.stride - w.padding;
    const int64_t h_begin = max(h0, int64_t{0}), h_end = min(h0 + w.kernel, w.height);
    const int64_t w_begin = max(w0, int64_t{0}), w_end = min(w0 + w.kernel, w.width);
    float sum = 0.0f;
    for (int64_t ih = h_begin; ih < h_end; ++ih) {
      for (int64_t iw = w_begin; iw < w_end; ++iw) sum += in[ih * w.width + iw];
    }
    y[e] = sum * inverse_area;
  }
}

// ceil(a / b) for b > 0 and any a.
__device__ __forceinline__ int64_t ceil_div_signed(int64_t a, int64_t b) {
  return a > 0 ? (a + b - 1) / b : -((-a) / b);
}

// Each thread owns inputs e = (p, ih, iw) (grid-stride) and gathers from the outputs whose
// window covers it: oh*s - pad <= ih < oh*s - pad + K, i.e. oh in [ceil((ih + pad - K + 1) / s),
// floor((ih + pad) / s)] within [0, Ho), likewise ow. dx = sum of dy[o] / (K * K), added in
// increasing (oh, ow) order as the CPU scatter adds them.
template <class Index>
__global__ void avg_pool_backward_kernel(const float* dy, Index total, Window w, float inverse_area,
                                         float* dx) {
  const Index width = static_cast<Index>(w.width);
  const Index height = static_cast<Index>(w.height);
  const int64_t out_plane = w.out_height * w.out_width;
  for (Index e : grid_stride(total)) {
    const int64_t iw = e % width;
    const Index rest = e / width;
    const int64_t ih = rest % height;
    const Index p = rest / height;
    const float* g = dy + static_cast<int64_t>(p) * out_plane;
    const int64_t oh_begin =
        max(int64_t{0}, ceil_div_signed(ih + w.padding - w.kernel + 1, w.stride));
    const int64_t oh_end = min(w.out_height, (ih + w.padding) / w.stride + 1);
    const int64_t ow_begin =
        max(int64_t{0}, ceil_div_signed(iw + w.padding - w.kernel + 1, w.stride));
    const int64_t ow_end = min(w.out_width, (iw + w.padding) / w.stride + 1);
    float sum = 0.0f;
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
        sum = __fadd_rn(sum, __fmul_rn(g[oh * w.out_width + ow], inverse_area));
      }
    }
    dx[e] = sum;
  }
}

// One warp owns plane p (grid-stride over planes): lane l sums, in double, elements l, l + 32,
// ... of the plane; a shuffle tree adds the 32 partial sums; y[p] = float(sum) / plane_size.
__global__ void global_avg_forward_kernel(const float* x, int64_t planes, int64_t plane_size,
                                          float inverse_size, float* y) {
  const int lane = threadIdx.x % 32;
  for (int64_t p : grid_stride_warps(planes)) {
    const float* in = x + p * plane_size;
    double sum = 0.0;
    for (int64_t i = lane; i < plane_size; i += 32) sum += in[i];
    sum = warp_all_sum(sum);
    if (lane == 0) y[p] = static_cast<float>(sum) * inverse_size;
  }
}

// Each thread owns elements e of dx (grid-stride): dx[e] = dy[e / plane_size] / plane_size.
template <class Index>
__global__ void global_avg_backward_kernel(const float* dy, Index total, Index plane_size,
                                           float inverse_size, float* dx) {
  for (Index e : grid_stride(total)) dx[e] = dy[e / plane_size] * inverse_size;
}

void check_window(const char* op, int64_t planes, const Window& w) {
  SYNCBN_CHECK(planes >= 0 && w.height >= 0 && w.width >= 0 && w.out_height >= 0 &&
                   w.out_width >= 0 && w.kernel > 0 && w.stride > 0 && w.padding >= 0,
               op, ": invalid geometry (planes ", planes, ", ", w.height, "x", w.width, " -> ",
               w.out_height, "x", w.out_width, ", kernel ", w.kernel, ", stride ", w.stride,
               ", padding ", w.padding, ")");
  // The argmax is stored as an int32 position within its plane.
  SYNCBN_CHECK(w.height * w.width <= INT32_MAX, op, ": plane of ", w.height, "x", w.width,
               " is too large for int32 indices");
}

}  // namespace

void max_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y, int32_t* indices) {
  const Window w{height, width, kernel, stride, padding, out_height, out_width};
  check_window("max_pool2d_forward", planes, w);
  const int64_t total = planes * out_height * out_width;
  if (total == 0) return;
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(max_pool_forward_kernel<Index>, blocks_for(total), kThreads, x,
           static_cast<Index>(total), w, y, indices);
  });
}

void max_pool2d_backward(const float* dy, const int32_t* indices, int64_t planes, int64_t height,
                         int64_t width, int64_t out_height, int64_t out_width, float* dx) {
  SYNCBN_CHECK(planes >= 0 && height >= 0 && width >= 0 && out_height >= 0 && out_width >= 0,
               "max_pool2d_backward: negative size");
  const int64_t in_plane = height * width;
  if (planes == 0 || in_plane == 0) return;
  launch(max_pool_backward_kernel, blocks_for(planes, kWarpsPerBlock), kThreads, dy, indices,
         planes, in_plane, out_height * out_width, dx);
}

void avg_pool2d_forward(const float* x, int64_t planes, int64_t height, int64_t width,
                        int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                        int64_t out_width, float* y) {
  const Window w{height, width, kernel, stride, padding, out_height, out_width};
  check_window("avg_pool2d_forward", planes, w);
  const int64_t total = planes * out_height * out_width;
  if (total == 0) return;
  const float inverse_area = 1.0f / static_cast<float>(kernel * kernel);
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(avg_pool_forward_kernel<Index>, blocks_for(total), kThreads, x,
           static_cast<Index>(total), w, inverse_area, y);
  });
}

void avg_pool2d_backward(const float* dy, int64_t planes, int64_t height, int64_t width,
                         int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
                         int64_t out_width, float* dx) {
  const Window w{height, width, kernel, stride, padding, out_height, out_width};
  check_window("avg_pool2d_backward", planes, w);
  const int64_t total = planes * height * width;
  if (total == 0) return;
  const float inverse_area = 1.0f / static_cast<float>(kernel * kernel);
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(avg_pool_backward_kernel<Index>, blocks_for(total), kThreads, dy,
           static_cast<Index>(total), w, inverse_area, dx);
  });
}

void global_avg_pool2d_forward(const float* x, int64_t planes, int64_t plane_size, float* y) {
  SYNCBN_CHECK(planes >= 0 && plane_size >= 0, "global_avg_pool2d_forward: negative size");
  if (planes == 0) return;
  // An empty plane has no mean (the op rejects it); 1 / 0 = inf times a sum of 0 gives NaN, as
  // the CPU kernel would.
  const float inverse_size = 1.0f / static_cast<float>(plane_size);
  launch(global_avg_forward_kernel, blocks_for(planes, kWarpsPerBlock), kThreads, x, planes,
         plane_size, inverse_size, y);
}

void global_avg_pool2d_backward(const float* dy, int64_t planes, int64_t plane_size, float* dx) {
  SYNCBN_CHECK(planes >= 0 && plane_size >= 0, "global_avg_pool2d_backward: negative size");
  const int64_t total = planes * plane_size;
  if (total == 0) return;
  const float inverse_size = 1.0f / static_cast<float>(plane_size);
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(global_avg_backward_kernel<Index>, blocks_for(total), kThreads, dy,
           static_cast<Index>(total), static_cast<Index>(plane_size), inverse_size, dx);
  });
}

}  // namespace syncbn::cuda
