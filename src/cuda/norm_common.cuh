#pragma once
// Machinery shared by the normalisation kernels (batch_norm.cu, group_norm.cu); internal to
// src/cuda/.
//
// Per-channel reductions. A channel is either
//   planes:  N runs of S contiguous values, run n at x + (n*C + c)*S      (NCHW), or
//   columns: column c of a row-major (R, C) matrix                        (NHWC, or S == 1).
// An Op says what each value contributes: two fp32 numbers (v0, v1), e.g. (x - L, (x - L)^2).
// Each thread adds the contributions of a small group of values (kUnroll loads of kVec values)
// pairwise in fp32 and adds the group's sum to two double accumulators; blocks add their
// threads in double in a fixed tree, and when a channel is split over several blocks, each block
// writes its totals to a scratch buffer that merge_partials_kernel adds in split order. So fp32
// rounding is confined to groups of at most 16 values, every longer sum is double, and the
// result is the same on every run (no atomics).
//
// Elementwise maps. Every elementwise normalisation kernel computes
//   out = a * dy + b * (x - mean) + c      (no dy term in forward)
// with per-element coefficients (mean, a, b, c) from a Coef functor, in the CPU kernels' order
// of operations and without FMA contraction, so that the GPU result equals the CPU one bit for
// bit when the coefficients are equal.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/runtime.h"
#include "util/math.h"

namespace syncbn::cuda::norm {

constexpr int kThreads = 256;  // threads per block of every kernel here
constexpr int kUnroll = 4;     // loads in flight per thread and iteration

inline bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline int multiprocessor_count() {
  int count = 0;
  SYNCBN_CUDA_CHECK(
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, current_device()));
  return count;
}

// Blocks of `kernel` (kThreads threads) resident on the whole device at once: one wave.
template <class Kernel>
int64_t wave_blocks(Kernel kernel) {
  int per_multiprocessor = 0;
  SYNCBN_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, kThreads, 0));
  return int64_t{std::max(per_multiprocessor, 1)} * multiprocessor_count();
}

// Splits per tile (a channel, or a tile of channels) for `tiles` tiles, at most max_splits: the
// number whose tiles * splits blocks fill whole waves best, looking up to about four waves
// (a last, partly filled wave runs at a fraction of the bandwidth). A larger count must fill
// 2% better to be taken.
inline int64_t choose_splits(int64_t tiles, int64_t wave, int64_t max_splits) {
  auto fill = [&](int64_t splits) {
    const int64_t blocks = tiles * splits;
    return static_cast<double>(blocks) / static_cast<double>(ceil_div(blocks, wave) * wave);
  };
  int64_t best = 1;
  double best_fill = fill(1);
  const int64_t last = std::min(max_splits, ceil_div(4 * wave, tiles));
  for (int64_t splits = 2; splits <= last; ++splits) {
    const double f = fill(splits);
    if (f > best_fill + 0.02) {
      best = splits;
      best_fill = f;
    }
  }
  return best;
}

// Device scratch memory from the caching allocator (cuda/runtime.h: syncbn/device.h needs C++20,
// these files are C++17), released when the host function returns.
// Kernels using it may still be queued then: that is safe because every syncbn kernel runs on
// the one compute stream and the caching allocator hands a freed block only to work queued
// after it.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes)
      : device_(current_device()), ptr_(bytes > 0 ? allocate(device_, bytes) : nullptr) {}
  ~Scratch() {
    if (ptr_) release(device_, ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  int device_;
  void* ptr_;
};

// kernel<<<grid, block, 0, stream()>>>(args...), then the launch check.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, const Args&... args) {
  kernel<<<grid, block, 0, stream()>>>(args...);
  SYNCBN_CUDA_CHECK_LAUNCH();
}

// Index arithmetic runs in uint32_t when the tensor has fewer than 2^31 elements (every index
// and every divisor then fits), else in uint64_t. f receives a value of the index type.
template <class F>
void dispatch_index(int64_t numel, F&& f) {
  if (numel < (int64_t{1} << 31)) {
    f(uint32_t{0});
  } else {
    f(uint64_t{0});
  }
}

// Quotients by a divisor fixed at launch. In 32 bits, q = (umulhi(n, magic) + n) >> shift with
// shift = ceil(log2 d), magic = floor(2^32 (2^shift - d) / d) + 1 (Granlund-Montgomery, as
// PyTorch's IntDivider): exact for n < 2^31 and 1 <= d <= 2^31. In 64 bits a plain division.
struct IndexDivider {
  uint64_t divisor = 1;
  uint32_t magic = 1;
  uint32_t shift = 0;

  IndexDivider() = default;
  explicit IndexDivider(int64_t d) : divisor(static_cast<uint64_t>(d)) {
    if (divisor >= 1 && divisor <= (uint64_t{1} << 31)) {
      while ((uint64_t{1} << shift) < divisor) ++shift;
      magic = static_cast<uint32_t>(
          ((uint64_t{1} << 32) * ((uint64_t{1} << shift) - divisor)) / divisor + 1);
    }
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
  __device__ __forceinline__ uint64_t div(uint64_t n) const { return n / divisor; }
  template <class Index>
  __device__ __forceinline__ Index mod(Index n) const {
    return n - div(n) * static_cast<Index>(divisor);
  }
};

template <class Index>
__device__ __forceinline__ Index min_index(Index a, Index b) {
  return a < b ? a : b;
}

template <int kVec>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 t = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = t.x;
    v[1] = t.y;
    v[2] = t.z;
    v[3] = t.w;
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = __ldg(p + j);
  }
}

template <int kVec>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) p[j] = v[j];
  }
}

// ((v0 + v1) + (v2 + v3)) ...: a pairwise sum of N = 1, 2, 4, 8 or 16 floats.
template <int N>
__device__ __forceinline__ float pairwise_sum(const float* v) {
  if constexpr (N == 1) {
    return v[0];
  } else {
    return pairwise_sum<N / 2>(v) + pairwise_sum<N / 2>(v + N / 2);
  }
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of (a, b) over a 1-D block of kThreads threads, valid in thread 0: a shuffle tree per
// warp, then one over the warps' sums. shared holds kThreads/32 values; the function ends with
// a barrier, so it may be called again at once.
__device__ __forceinline__ double2 block_sum(double a, double b, double2* shared) {
  a = warp_sum(a);
  b = warp_sum(b);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = make_double2(a, b);
  __syncthreads();
  if (warp == 0) {
    a = lane < kThreads / 32 ? shared[lane].x : 0.0;
    b = lane < kThreads / 32 ? shared[lane].y : 0.0;
    a = warp_sum(a);
    b = warp_sum(b);
  }
  __syncthreads();
  return make_double2(a, b);
}

// ---- Per-channel reductions ------------------------------------------------------------------
//
// An Op provides
//   static constexpr bool kHasDy;            whether dy is read
//   using Channel = ...;                     per-channel constants, loaded once per thread
//   Channel channel(Index c) const;
//   float2 element(const Channel&, Index n, Index c, Index pos, float x, float dy) const;
//       the (v0, v1) contribution of one value. Planes: n is the batch index and pos the
//       value's offset in its run of S. Columns: n is the row and pos is 0.
//   void finish(Index c, double total0, double total1) const;    called once per channel

// Planes. Block (blockIdx.x = channel c, blockIdx.y = split) owns the units [begin, end) of the
// channel's N * S/kVec units in (n, s) order, unit = kVec contiguous values; thread t reads
// units begin + t, begin + t + 256, ... (consecutive threads read consecutive addresses within a
// run). The block's double totals go to op.finish (one split) or to
// partials[(2*split + k) * C + c], k = 0, 1.
template <class Op, int kVec, class Index>
__global__ void __launch_bounds__(kThreads)
    reduce_planes_kernel(const float* __restrict__ x, const float* __restrict__ dy, Index channels,
                         Index spatial, Index units_per_channel, IndexDivider units_per_run,
                         Index units_per_split, double* __restrict__ partials, Op op) {
  __shared__ double2 shared[kThreads / 32];
  const Index begin = static_cast<Index>(blockIdx.y) * units_per_split;
  const Index end = min_index(units_per_channel, begin + units_per_split);
  const Index run_units = static_cast<Index>(units_per_run.divisor);
  for (Index c = blockIdx.x; c < channels; c += gridDim.x) {
    const typename Op::Channel channel = op.channel(c);
    double acc0 = 0.0, acc1 = 0.0;
    for (Index base = begin + threadIdx.x; base < end; base += kThreads * kUnroll) {
      float xv[kUnroll][kVec];
      float dyv[kUnroll][kVec];
      Index run[kUnroll], pos[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const Index i = base + k * kThreads;
        run[k] = 0;
        pos[k] = 0;
        if (i < end) {
          run[k] = units_per_run.div(i);
          pos[k] = (i - run[k] * run_units) * kVec;
          const Index offset = (run[k] * channels + c) * spatial + pos[k];
          load_vec<kVec>(x + offset, xv[k]);
          if constexpr (Op::kHasDy) load_vec<kVec>(dy + offset, dyv[k]);
        }
      }
      float group0[kUnroll], group1[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        group0[k] = 0.0f;
        group1[k] = 0.0f;
        if (base + k * kThreads < end) {
          float lane0[kVec], lane1[kVec];
#pragma unroll
          for (int j = 0; j < kVec; ++j) {
            float dy_value = 0.0f;
            if constexpr (Op::kHasDy) dy_value = dyv[k][j];
            const float2 v = op.element(channel, run[k], c, pos[k] + j, xv[k][j], dy_value);
            lane0[j] = v.x;
            lane1[j] = v.y;
          }
          group0[k] = pairwise_sum<kVec>(lane0);
          group1[k] = pairwise_sum<kVec>(lane1);
        }
      }
      acc0 += static_cast<double>(pairwise_sum<kUnroll>(group0));
      acc1 += static_cast<double>(pairwise_sum<kUnroll>(group1));
    }
    const double2 total = block_sum(acc0, acc1, shared);
    if (threadIdx.x == 0) {
      if (gridDim.y == 1) {
        op.finish(c, total.x, total.y);
      } else {
        const std::size_t split = blockIdx.y;
        partials[(2 * split) * channels + c] = total.x;
        partials[(2 * split + 1) * channels + c] = total.y;
      }
    }
  }
}

// Columns. Block (bx, by) with bx * by = 256, bx a power of two <= 32: lane tx owns the kVec
// consecutive channels c0 = (blockIdx.x * bx + tx) * kVec ..., and thread row ty reads rows
// r0 + ty, r0 + ty + by, ... of the block's rows [r0, r1) (blockIdx.y = split); a warp reads
// whole row segments (coalesced). Per channel, each thread adds kUnroll rows in fp32 per
// iteration; the block adds its by thread rows in double (a tree over ty in shared memory).
template <class Op, int kVec, class Index>
__global__ void __launch_bounds__(kThreads)
    reduce_columns_kernel(const float* __restrict__ x, const float* __restrict__ dy, Index rows,
                          Index channels, Index rows_per_split, double* __restrict__ partials,
                          Op op) {
  __shared__ double shared[kThreads * kVec * 2];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int bx = blockDim.x, by = blockDim.y;
  const Index unit = static_cast<Index>(blockIdx.x) * bx + tx;
  const bool active = unit < channels / kVec;
  const Index c0 = unit * kVec;
  const Index r_begin = static_cast<Index>(blockIdx.y) * rows_per_split;
  const Index r_end = min_index(rows, r_begin + rows_per_split);

  double acc0[kVec], acc1[kVec];
#pragma unroll
  for (int j = 0; j < kVec; ++j) acc0[j] = acc1[j] = 0.0;
  if (active) {
    typename Op::Channel channel[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) channel[j] = op.channel(c0 + j);
    for (Index base = r_begin + ty; base < r_end; base += static_cast<Index>(by) * kUnroll) {
      float xv[kUnroll][kVec];
      float dyv[kUnroll][kVec];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const Index r = base + static_cast<Index>(k) * by;
        if (r < r_end) {
          const Index offset = r * channels + c0;
          load_vec<kVec>(x + offset, xv[k]);
          if constexpr (Op::kHasDy) load_vec<kVec>(dy + offset, dyv[k]);
        }
      }
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        float group0[kUnroll], group1[kUnroll];
#pragma unroll
        for (int k = 0; k < kUnroll; ++k) {
          const Index r = base + static_cast<Index>(k) * by;
          group0[k] = 0.0f;
          group1[k] = 0.0f;
          if (r < r_end) {
            float dy_value = 0.0f;
            if constexpr (Op::kHasDy) dy_value = dyv[k][j];
            const float2 v = op.element(channel[j], r, c0 + j, Index{0}, xv[k][j], dy_value);
            group0[k] = v.x;
            group1[k] = v.y;
          }
        }
        acc0[j] += static_cast<double>(pairwise_sum<kUnroll>(group0));
        acc1[j] += static_cast<double>(pairwise_sum<kUnroll>(group1));
      }
    }
  }

  // shared[((ty * bx + tx) * kVec + j) * 2 + k]; halve the thread rows until row 0 holds the sum.
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int slot = ((ty * bx + tx) * kVec + j) * 2;
    shared[slot] = acc0[j];
    shared[slot + 1] = acc1[j];
  }
  __syncthreads();
  for (int stride = by / 2; stride > 0; stride /= 2) {
    if (ty < stride) {
#pragma unroll
      for (int j = 0; j < kVec * 2; ++j) {
        shared[(ty * bx + tx) * kVec * 2 + j] += shared[((ty + stride) * bx + tx) * kVec * 2 + j];
      }
    }
    __syncthreads();
  }
  if (ty == 0 && active) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const double total0 = shared[(tx * kVec + j) * 2];
      const double total1 = shared[(tx * kVec + j) * 2 + 1];
      if (gridDim.y == 1) {
        op.finish(c0 + j, total0, total1);
      } else {
        const std::size_t split = blockIdx.y;
        partials[(2 * split) * channels + c0 + j] = total0;
        partials[(2 * split + 1) * channels + c0 + j] = total1;
      }
    }
  }
}

// Thread c adds channel c's per-split totals in split order and finishes the channel.
template <class Op, class Index>
__global__ void __launch_bounds__(kThreads)
    merge_partials_kernel(const double* __restrict__ partials, int splits, Index channels, Op op) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index c = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; c < channels;
       c += stride) {
    double total0 = 0.0, total1 = 0.0;
    for (int split = 0; split < splits; ++split) {
      total0 += partials[(2 * static_cast<std::size_t>(split)) * channels + c];
      total1 += partials[(2 * static_cast<std::size_t>(split) + 1) * channels + c];
    }
    op.finish(c, total0, total1);
  }
}

// Reduces every channel of x (and dy) viewed as (batch, channels, spatial): planes (NCHW), or
// columns when channels_last or spatial == 1 (rows = batch * spatial). Needs batch * spatial > 0
// and channels > 0 (callers handle empty inputs). A channel (planes) or tile of channels
// (columns) is split over several blocks to fill the device in whole waves (choose_splits), as
// long as each thread still reads 16 or more units.
template <class Op>
void reduce_per_channel(const float* x, const float* dy, int64_t batch, int64_t channels,
                        int64_t spatial, bool channels_last, const Op& op) {
  const int64_t numel = batch * channels * spatial;
  const bool aligned = is_aligned16(x) && (dy == nullptr || is_aligned16(dy));
  constexpr int64_t kMinUnitsPerThread = 4 * kUnroll;
  constexpr int64_t kMaxSplits = 65535;  // grid.y

  auto run = [&](auto vec_tag, auto index_tag) {
    constexpr int kVec = decltype(vec_tag)::value;
    using Index = decltype(index_tag);
    int64_t splits = 1;
    int64_t per_split = 0;
    dim3 grid, block;
    if (channels_last || spatial == 1) {
      const int64_t rows = batch * spatial;
      const int64_t units = channels / kVec;
      int bx = 1;
      while (bx < 32 && bx < units) bx *= 2;
      const int by = kThreads / bx;
      const int64_t column_blocks = ceil_div(units, bx);
      const int64_t max_splits =
          std::clamp<int64_t>(rows / (by * kMinUnitsPerThread), 1, kMaxSplits);
      splits = choose_splits(column_blocks, wave_blocks(reduce_columns_kernel<Op, kVec, Index>),
                             max_splits);
      per_split = ceil_div(rows, splits);
      splits = ceil_div(rows, per_split);
      grid = dim3(static_cast<unsigned>(column_blocks), static_cast<unsigned>(splits));
      block = dim3(bx, by);
      Scratch partials(splits > 1 ? sizeof(double) * 2 * channels * splits : 0);
      launch(reduce_columns_kernel<Op, kVec, Index>, grid, block, x, dy, static_cast<Index>(rows),
             static_cast<Index>(channels), static_cast<Index>(per_split), partials.as<double>(),
             op);
      if (splits > 1) {
        launch(merge_partials_kernel<Op, Index>, dim3(blocks_for(channels, kThreads)),
               dim3(kThreads), partials.as<const double>(), static_cast<int>(splits),
               static_cast<Index>(channels), op);
      }
    } else {
      const int64_t units_per_run = spatial / kVec;
      const int64_t units = batch * units_per_run;
      const int64_t max_splits =
          std::clamp<int64_t>(units / (kThreads * kMinUnitsPerThread), 1, kMaxSplits);
      splits =
          choose_splits(channels, wave_blocks(reduce_planes_kernel<Op, kVec, Index>), max_splits);
      per_split = ceil_div(units, splits);
      splits = ceil_div(units, per_split);
      const int64_t channel_blocks = std::min<int64_t>(channels, 0x7fffffff);
      grid = dim3(static_cast<unsigned>(channel_blocks), static_cast<unsigned>(splits));
      Scratch partials(splits > 1 ? sizeof(double) * 2 * channels * splits : 0);
      launch(reduce_planes_kernel<Op, kVec, Index>, grid, dim3(kThreads), x, dy,
             static_cast<Index>(channels), static_cast<Index>(spatial), static_cast<Index>(units),
             IndexDivider(units_per_run), static_cast<Index>(per_split), partials.as<double>(), op);
      if (splits > 1) {
        launch(merge_partials_kernel<Op, Index>, dim3(blocks_for(channels, kThreads)),
               dim3(kThreads), partials.as<const double>(), static_cast<int>(splits),
               static_cast<Index>(channels), op);
      }
    }
  };
  const bool vec =
      aligned && ((channels_last || spatial == 1) ? channels % 4 == 0 : spatial % 4 == 0);
  dispatch_index(numel, [&](auto index_tag) {
    if (vec) {
      run(std::integral_constant<int, 4>{}, index_tag);
    } else {
      run(std::integral_constant<int, 1>{}, index_tag);
    }
  });
}

// ---- Elementwise affine maps -----------------------------------------------------------------

// out = a * dy + b * (x - mean) + c.
struct Affine {
  float mean, a, b, c;
};

template <bool kHasDy>
__device__ __forceinline__ float apply_affine(const Affine& k, float x, float dy) {
  const float centred = __fmul_rn(k.b, __fsub_rn(x, k.mean));
  if constexpr (kHasDy) {
    return __fadd_rn(__fadd_rn(__fmul_rn(k.a, dy), centred), k.c);
  } else {
    return __fadd_rn(centred, k.c);
  }
}

// A Coef provides
//   Affine at(Index plane, Index c) const;   plane = n*C + c, the (n, c) of the value
//   void lanes<kVec>(Index plane0, Index c0, Affine (&k)[kVec]) const;
//       the coefficients of kVec consecutive channels c0.. of one row (rows layout); the planes
//       of those values are plane0 + j only when spatial == 1.
//
// Unit i covers kVec consecutive values at x + i*kVec:
//   planes layout (NCHW): values of plane i / U (U = S/kVec units per plane), channel plane % C;
//   rows layout (NHWC, or S == 1): channels (i % U)*kVec.. of row i / U (U = C/kVec).
// Each thread takes kUnroll units (kThreads apart, so a warp's accesses are contiguous) per
// iteration of a grid-stride loop, loads first.
template <class Coef, bool kHasDy, bool kRows, int kVec, class Index>
__global__ void __launch_bounds__(kThreads)
    affine_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                  float* __restrict__ out, Index units, IndexDivider units_per_row,
                  IndexDivider channels, Coef coef) {
  const Index stride = static_cast<Index>(gridDim.x) * (kThreads * kUnroll);
  const Index row_units = static_cast<Index>(units_per_row.divisor);
  for (Index base = static_cast<Index>(blockIdx.x) * (kThreads * kUnroll) + threadIdx.x;
       base < units; base += stride) {
    float xv[kUnroll][kVec];
    float dyv[kUnroll][kVec];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const Index i = base + k * kThreads;
      if (i < units) {
        load_vec<kVec>(x + i * kVec, xv[k]);
        if constexpr (kHasDy) load_vec<kVec>(dy + i * kVec, dyv[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const Index i = base + k * kThreads;
      if (i < units) {
        Affine coefficients[kVec];
        if constexpr (kRows) {
          const Index row = units_per_row.div(i);
          const Index c0 = (i - row * row_units) * kVec;
          coef.template lanes<kVec>(i * kVec, c0, coefficients);
        } else {
          const Index plane = units_per_row.div(i);
          const Index c = channels.mod(plane);
          const Affine shared = coef.at(plane, c);
#pragma unroll
          for (int j = 0; j < kVec; ++j) coefficients[j] = shared;
        }
        float result[kVec];
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          float dy_value = 0.0f;
          if constexpr (kHasDy) dy_value = dyv[k][j];
          result[j] = apply_affine<kHasDy>(coefficients[j], xv[k][j], dy_value);
        }
        store_vec<kVec>(out + i * kVec, result);
      }
    }
  }
}

// out = a * dy + b * (x - mean) + c over x viewed as (batch, channels, spatial), planes (NCHW)
// or rows (channels_last, or spatial == 1). dy is read when kHasDy. Vectorised (float4) when
// the pointers are 16-byte aligned and a float4 stays in one plane (S % 4 == 0) or one row
// (C % 4 == 0). Launches nothing when empty.
template <bool kHasDy, class Coef>
void launch_affine(const float* x, const float* dy, float* out, int64_t batch, int64_t channels,
                   int64_t spatial, bool channels_last, const Coef& coef) {
  const int64_t numel = batch * channels * spatial;
  if (numel == 0) return;
  const bool rows = channels_last || spatial == 1;
  const bool aligned = is_aligned16(x) && is_aligned16(out) && (!kHasDy || is_aligned16(dy));
  const bool vec = aligned && (rows ? channels % 4 == 0 : spatial % 4 == 0);

  auto run = [&](auto vec_tag, auto rows_tag, auto index_tag) {
    constexpr int kVec = decltype(vec_tag)::value;
    constexpr bool kRows = decltype(rows_tag)::value;
    using Index = decltype(index_tag);
    const int64_t units = numel / kVec;
    const int64_t units_per_row = kRows ? channels / kVec : spatial / kVec;
    // One iteration per thread; the loop strides only past 2^31 - 1 blocks.
    const int64_t blocks =
        std::clamp<int64_t>(ceil_div(units, kThreads * kUnroll), 1, int64_t{0x7fffffff});
    launch(affine_kernel<Coef, kHasDy, kRows, kVec, Index>, dim3(static_cast<unsigned>(blocks)),
           dim3(kThreads), x, dy, out, static_cast<Index>(units), IndexDivider(units_per_row),
           IndexDivider(channels), coef);
  };
  dispatch_index(numel, [&](auto index_tag) {
    using Vec4 = std::integral_constant<int, 4>;
    using Vec1 = std::integral_constant<int, 1>;
    using RowsTag = std::true_type;
    using PlanesTag = std::false_type;
    if (vec && rows) run(Vec4{}, RowsTag{}, index_tag);
    if (vec && !rows) run(Vec4{}, PlanesTag{}, index_tag);
    if (!vec && rows) run(Vec1{}, RowsTag{}, index_tag);
    if (!vec && !rows) run(Vec1{}, PlanesTag{}, index_tag);
  });
}

}  // namespace syncbn::cuda::norm
