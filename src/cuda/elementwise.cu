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

namespace syncbn::cuda {

namespace {

constexpr int kThreads = 256;
// Below this many elements (plus a margin of one grid of threads) 32-bit index math is safe.
constexpr int64_t kMaxIndex32 = int64_t{1} << 31;

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

template <class Index>
__device__ __forceinline__ Index first_index() {
  return static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
}
template <class Index>
__device__ __forceinline__ Index grid_step() {
  return static_cast<Index>(blockDim.x) * gridDim.x;
}

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
  const int64_t step = grid_step<int64_t>();
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t g = first_index<int64_t>(); g < groups; g += step) {
      const float4 u = a4[g];
      out4[g] = make_float4(f(u.x), f(u.y), f(u.z), f(u.w));
    }
    tail = groups * 4;
  }
  for (int64_t i = tail + first_index<int64_t>(); i < n; i += step) out[i] = f(a[i]);
}

template <bool kVector, class F>
__global__ void binary_kernel(const float* a, const float* b, int64_t n, float* out, F f) {
  const int64_t step = grid_step<int64_t>();
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t g = first_index<int64_t>(); g < groups; g += step) {
      const float4 u = a4[g];
      const float4 v = b4[g];
      out4[g] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
    }
    tail = groups * 4;
  }
  for (int64_t i = tail + first_index<int64_t>(); i < n; i += step) out[i] = f(a[i], b[i]);
}

template <class F>
void launch_unary(const float* a, int64_t n, float* out, F f) {
  SYNCBN_CHECK(n >= 0, "elementwise kernel: negative size ", n);
  if (n == 0) return;
  if (aligned16(a) && aligned16(out)) {
    unary_kernel<true><<<blocks_for((n + 3) / 4, kThreads), kThreads, 0, stream()>>>(a, n, out, f);
  } else {
    unary_kernel<false><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(a, n, out, f);
  }
  SYNCBN_CUDA_CHECK_LAUNCH();
}

template <class F>
void launch_binary(const float* a, const float* b, int64_t n, float* out, F f) {
  SYNCBN_CHECK(n >= 0, "elementwise kernel: negative size ", n);
  if (n == 0) return;
  if (aligned16(a) && aligned16(b) && aligned16(out)) {
    binary_kernel<true>
        <<<blocks_for((n + 3) / 4, kThreads), kThreads, 0, stream()>>>(a, b, n, out, f);
  } else {
    binary_kernel<false><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(a, b, n, out, f);
  }
  SYNCBN_CUDA_CHECK_LAUNCH();
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
  const int64_t step = grid_step<int64_t>();
  for (int64_t i = first_index<int64_t>(); i < n; i += step) {
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
  const Index step = grid_step<Index>();
  for (Index e = first_index<Index>(); e < total; e += step) {
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
  const unsigned int blocks = blocks_for(total, kThreads);
  if (total < kMaxIndex32) {
    bias_kernel<uint32_t, kAdd><<<blocks, kThreads, 0, stream()>>>(
        bias, static_cast<uint32_t>(channels), static_cast<uint32_t>(inner),
        static_cast<uint32_t>(total), y);
  } else {
    bias_kernel<int64_t, kAdd><<<blocks, kThreads, 0, stream()>>>(bias, channels, inner, total, y);
  }
  SYNCBN_CUDA_CHECK_LAUNCH();
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
  for (Index c = blockIdx.x; c < channels; c += gridDim.x) {
    double sum = 0.0;
    for (Index e = threadIdx.x; e < per_channel; e += kPlaneThreads) {
      const Index i = e / inner;
      const Index j = e - i * inner;
      sum += dy[(i * channels + c) * inner + j];
    }
    for (int offset = 16; offset > 0; offset /= 2)
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x < 32) {
      double total = threadIdx.x < kPlaneThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
      for (int offset = 16; offset > 0; offset /= 2) {
        total += __shfl_down_sync(0xffffffffu, total, offset);
      }
      if (threadIdx.x == 0) dbias[c] += static_cast<float>(total);
    }
    __syncthreads();  // warp_sums is reused by the next channel
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
  dropout_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(x, base, threshold, keep_scale,
                                                                     n, mask, y);
  SYNCBN_CUDA_CHECK_LAUNCH();
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
    const int64_t blocks = (channels + kColumnsPerBlock - 1) / kColumnsPerBlock;
    SYNCBN_CHECK(blocks <= INT32_MAX, "bias_grad: too many channels (", channels, ")");
    bias_grad_rows_kernel<<<static_cast<unsigned int>(blocks), dim3(kColumnsPerBlock, kRowGroups),
                            0, stream()>>>(dy, outer, channels, dbias);
  } else {
    const unsigned int blocks = blocks_for(channels, 1);
    if (outer * channels * inner < kMaxIndex32) {
      bias_grad_planes_kernel<uint32_t><<<blocks, kPlaneThreads, 0, stream()>>>(
          dy, static_cast<uint32_t>(outer), static_cast<uint32_t>(channels),
          static_cast<uint32_t>(inner), dbias);
    } else {
      bias_grad_planes_kernel<int64_t>
          <<<blocks, kPlaneThreads, 0, stream()>>>(dy, outer, channels, inner, dbias);
    }
  }
  SYNCBN_CUDA_CHECK_LAUNCH();
}

}  // namespace syncbn::cuda
