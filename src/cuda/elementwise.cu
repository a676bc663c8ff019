// Elementwise kernels on the GPU: activations, dropout, bias, and the BLAS-1 style updates.
//
// Each result is computed with the same float operations, in the same order, as the CPU kernel
// of the same name (products that feed a sum use __fmul_rn, which nvcc never fuses into an FMA;
// the CPU build has no FMA either), so relu, dropout, add, axpy, scale and the bias kernels agree
// with the CPU bit for bit. bias_grad sums in double like the CPU, in a different (fixed) order.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/elementwise.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

// ---- maps: out[i] = f(a[i]) or f(a[i], b[i]) ------------------------------------------------

struct Relu {
  // NaN passes through (v != v), as in PyTorch and the CPU kernel.
  __device__ float operator()(float v) const { return (v > 0.0f || v != v) ? v : 0.0f; }
};
struct ReluBackward {  // (y, dy) -> dy where y > 0
  __device__ float operator()(float y, float g) const { return y > 0.0f ? g : 0.0f; }
};
struct Multiply {
  __device__ float operator()(float a, float b) const { return a * b; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Axpy {  // (x, y) -> y + alpha * x, rounded after the product as on the CPU
  float alpha;
  __device__ float operator()(float x, float y) const { return __fadd_rn(y, __fmul_rn(alpha, x)); }
};
struct Scale {
  float alpha;
  __device__ float operator()(float x) const { return x * alpha; }
};

// Each thread owns elements i, i + G, i + 2G, ... (G = threads in the grid). With kVector (all
// pointers 16-byte aligned) it owns float4 groups that way, then the n % 4 tail elements. An
// output may alias an input: every element is read and written by the same thread.
template <bool kVector, class F>
__global__ void unary_kernel(const float* a, int64_t n, float* out, F f) {
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    for (int64_t g : grid_stride(groups)) {
      const float4 u = load_float4(a + 4 * g);
      store_float4(out + 4 * g, make_float4(f(u.x), f(u.y), f(u.z), f(u.w)));
    }
    tail = groups * 4;
  }
  for (int64_t i : grid_stride(tail, n)) out[i] = f(a[i]);
}

template <bool kVector, class F>
__global__ void binary_kernel(const float* a, const float* b, int64_t n, float* out, F f) {
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    for (int64_t g : grid_stride(groups)) {
      const float4 u = load_float4(a + 4 * g);
      const float4 v = load_float4(b + 4 * g);
      store_float4(out + 4 * g, make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w)));
    }
    tail = groups * 4;
  }
  for (int64_t i : grid_stride(tail, n)) out[i] = f(a[i], b[i]);
}

template <class F>
void launch_unary(const float* a, int64_t n, float* out, F f) {
  SYNCBN_CHECK(n >= 0, "elementwise kernel: negative size ", n);
  if (n == 0) return;
  if (is_aligned16(a) && is_aligned16(out)) {
    launch(unary_kernel<true, F>, blocks_for(ceil_div(n, 4)), kThreads, a, n, out, f);
  } else {
    launch(unary_kernel<false, F>, blocks_for(n), kThreads, a, n, out, f);
  }
}

template <class F>
void launch_binary(const float* a, const float* b, int64_t n, float* out, F f) {
  SYNCBN_CHECK(n >= 0, "elementwise kernel: negative size ", n);
  if (n == 0) return;
  if (is_aligned16(a) && is_aligned16(b) && is_aligned16(out)) {
    launch(binary_kernel<true, F>, blocks_for(ceil_div(n, 4)), kThreads, a, b, n, out, f);
  } else {
    launch(binary_kernel<false, F>, blocks_for(n), kThreads, a, b, n, out, f);
  }
}

// ---- dropout ----------------------------------------------------------------------------------

// SplitMix64's finaliser, exactly as in the CPU kernel.
__host__ __device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Each thread owns elements i (grid-stride): bits = mix64(mix64(seed) + i * golden ratio), kept
// when bits >> 32 >= threshold = p * 2^32; mask[i] = kept ? 1 / (1 - p) : 0, y[i] = x[i] * mask[i].
// base, threshold and keep_scale are computed on the host with the CPU kernel's expressions.
__global__ void dropout_kernel(const float* x, uint64_t base, uint64_t threshold, float keep_scale,
                               int64_t n, float* mask, float* y) {
  for (int64_t i : grid_stride(n)) {
    const uint64_t bits = mix64(base + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL);
    const float m = (bits >> 32) >= threshold ? keep_scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

// ---- per-channel bias -------------------------------------------------------------------------

// y viewed as (outer, channels, inner), total = outer * channels * inner elements. Each thread
// owns elements e (grid-stride), of channel c = (e / inner) % channels: y[e] = bias[c], or
// y[e] += bias[c] with kAdd.
template <class Index, bool kAdd>
__global__ void bias_kernel(const float* bias, Index channels, Index inner, Index total, float* y) {
  for (Index e : grid_stride(total)) {
    const float b = bias[(e / inner) % channels];
    if constexpr (kAdd) {
      y[e] = y[e] + b;
    } else {
      y[e] = b;
    }
  }
}

template <bool kAdd>
void launch_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y) {
  SYNCBN_CHECK(outer >= 0 && channels >= 0 && inner >= 0, "bias kernel: negative size (", outer,
               ", ", channels, ", ", inner, ")");
  const int64_t total = outer * channels * inner;
  if (total == 0) return;
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(bias_kernel<Index, kAdd>, blocks_for(total), kThreads, bias,
           static_cast<Index>(channels), static_cast<Index>(inner), static_cast<Index>(total), y);
  });
}

// ---- bias gradient ----------------------------------------------------------------------------

constexpr int kColumnsPerBlock = 32;
constexpr int kRowGroups = 16;

// dy (outer, channels) as rows (inner == 1, a Linear layer). A block of 32 x 16 threads owns 32
// consecutive channels: thread (tx, ty) sums, in double, rows ty, ty + 16, ... of column
// c = 32 * blockIdx.x + tx (each warp reads 32 consecutive floats of a row); the block then adds
// the 16 partial sums of each column in ty order, and dbias[c] += their float.
__global__ void bias_grad_rows_kernel(const float* dy, int64_t outer, int64_t channels,
                                      float* dbias) {
  __shared__ double partial[kRowGroups][kColumnsPerBlock];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnsPerBlock + threadIdx.x;
  double sum = 0.0;
  if (c < channels) {
    for (int64_t i = threadIdx.y; i < outer; i += kRowGroups) sum += dy[i * channels + c];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < channels) {
    double total = 0.0;
    for (int r = 0; r < kRowGroups; ++r) total += partial[r][threadIdx.x];
    dbias[c] += static_cast<float>(total);
  }
}

constexpr int kPlaneThreads = 512;

// dy (outer, channels, inner), inner > 1 (NCHW). A block owns channel c (grid-stride over
// channels): thread t sums, in double, the channel's elements e = t, t + 512, ... of its
// outer * inner values (plane i = e / inner, offset j = e % inner; consecutive threads read
// consecutive floats of a plane). The block reduces the 512 partial sums in a fixed tree order
// (shuffles within warps, then the warp sums in shared memory): dbias[c] += float(sum).
template <class Index>
__global__ void bias_grad_planes_kernel(const float* dy, Index outer, Index channels, Index inner,
                                        float* dbias) {
  __shared__ double warp_sums[kPlaneThreads / 32];
  const Index per_channel = outer * inner;
  for (Index c : grid_stride_blocks(channels)) {
    double sum = 0.0;
    for (Index e = threadIdx.x; e < per_channel; e += kPlaneThreads) {
      const Index i = e / inner;
      const Index j = e - i * inner;
      sum += dy[(i * channels + c) * inner + j];
    }
    const double total = block_sum<kPlaneThreads>(sum, warp_sums);
    if (threadIdx.x == 0) dbias[c] += static_cast<float>(total);
  }
}

}  // namespace

void relu_forward(const float* x, int64_t n, float* y) { launch_unary(x, n, y, Relu{}); }

void relu_backward(const float* y, const float* dy, int64_t n, float* dx) {
  launch_binary(y, dy, n, dx, ReluBackward{});
}

void dropout_forward(const float* x, uint64_t seed, float p, int64_t n, float* mask, float* y) {
  SYNCBN_CHECK(p >= 0.0f && p < 1.0f, "dropout_forward: p must be in [0, 1), got ", p);
  SYNCBN_CHECK(n >= 0, "dropout_forward: negative size ", n);
  if (n == 0) return;
  // The CPU kernel's expressions, evaluated on the host, so the mask and scale are identical.
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
  const float keep_scale = 1.0f / (1.0f - p);
  const uint64_t base = mix64(seed);
  launch(dropout_kernel, blocks_for(n), kThreads, x, base, threshold, keep_scale, n, mask, y);
}

void multiply(const float* a, const float* b, int64_t n, float* out) {
  launch_binary(a, b, n, out, Multiply{});
}

void add(const float* a, const float* b, int64_t n, float* out) {
  launch_binary(a, b, n, out, Add{});
}

void axpy(float alpha, const float* x, int64_t n, float* y) {
  launch_binary(x, y, n, y, Axpy{alpha});
}

void scale(float alpha, int64_t n, float* x) { launch_unary(x, n, x, Scale{alpha}); }

void broadcast_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y) {
  launch_bias<false>(bias, outer, channels, inner, y);
}

void add_bias(const float* bias, int64_t outer, int64_t channels, int64_t inner, float* y) {
  launch_bias<true>(bias, outer, channels, inner, y);
}

void bias_grad(const float* dy, int64_t outer, int64_t channels, int64_t inner, float* dbias) {
  SYNCBN_CHECK(outer >= 0 && channels >= 0 && inner >= 0, "bias_grad: negative size (", outer, ", ",
               channels, ", ", inner, ")");
  // Nothing to add (the CPU adds zeros, which changes nothing but the sign of a zero).
  if (outer == 0 || channels == 0 || inner == 0) return;
  if (inner == 1) {
    const int64_t blocks = ceil_div(channels, kColumnsPerBlock);
    SYNCBN_CHECK(blocks <= INT32_MAX, "bias_grad: too many channels (", channels, ")");
    launch(bias_grad_rows_kernel, static_cast<unsigned int>(blocks),
           dim3(kColumnsPerBlock, kRowGroups), dy, outer, channels, dbias);
  } else {
    dispatch_index<int64_t>(outer * channels * inner, [&](auto index_tag) {
      using Index = decltype(index_tag);
      launch(bias_grad_planes_kernel<Index>, blocks_for(channels, 1), kPlaneThreads, dy,
             static_cast<Index>(outer), static_cast<Index>(channels), static_cast<Index>(inner),
             dbias);
    });
  }
}

}  // namespace syncbn::cuda
