#pragma once
// The per-channel reductions of the normalisation kernels (batch_norm.cu, group_norm.cu);
// internal to src/cuda/. The elementwise maps are in cuda/norm_affine.cuh, the shared primitives
// (launch, loops, vector loads, warp and block sums) in cuda/primitives.cuh.
//
// A channel is either
//   planes:  N runs of S contiguous values, run n at x + (n*C + c)*S      (NCHW), or
//   columns: column c of a row-major (R, C) matrix                        (NHWC, or S == 1).
// An Op says what each value contributes: two fp32 numbers (v0, v1), e.g. (x - L, (x - L)^2).
// Each thread adds the contributions of a small group of values (kUnroll loads of kVec values)
// pairwise in fp32 and adds the group's sum to two double accumulators; blocks add their
// threads in double in a fixed tree, and when a channel is split over several blocks, each block
// writes its totals to a scratch buffer that merge_partials_kernel adds in split order. So fp32
// rounding is confined to groups of at most 16 values, every longer sum is double, and the
// result is the same on every run (no atomics).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cpu/norm_shape.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda::norm {

// The SM count and a kernel's occupancy are fixed per device (and kernel), but each query is a
// driver call, and wave_blocks runs on every launch of a reduction (every normalisation layer,
// every step). So each answer is asked for once and kept in a per-device slot: 0 means not yet
// asked (both answers are at least 1). Two threads may both find a slot empty; both then ask
// the driver and store the same answer, so plain atomics suffice and no lock is taken.
constexpr int kMaxCachedDevices = 64;
using PerDeviceCache = std::array<std::atomic<int>, kMaxCachedDevices>;

template <class Query>
int cached_per_device(PerDeviceCache& cache, Query query) {
  const int device = current_device();
  if (device < 0 || device >= kMaxCachedDevices) return query(device);
  int value = cache[device].load(std::memory_order_relaxed);
  if (value == 0) {
    value = query(device);
    cache[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

inline int multiprocessor_count() {
  static PerDeviceCache counts;  // static storage: zero-initialised
  return cached_per_device(counts, [](int device) {
    int count = 0;
    SYNCBN_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  });
}

// Blocks of kKernel (kThreads threads) resident on the whole device at once: one wave. The
// kernel is a template argument, not a parameter, so that each kernel has its own cache: kernels
// that differ only in kVec have the same pointer type but different shared memory and occupancy.
template <auto kKernel>
int64_t wave_blocks() {
  static PerDeviceCache per_multiprocessor;  // static storage: zero-initialised
  const int blocks = cached_per_device(per_multiprocessor, [](int) {
    int count = 0;
    SYNCBN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&count, kKernel, kThreads, 0));
    return std::max(count, 1);
  });
  return int64_t{blocks} * multiprocessor_count();
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

template <class Index>
__device__ __forceinline__ Index min_index(Index a, Index b) {
  return a < b ? a : b;
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
  for (Index c : grid_stride_blocks(channels)) {
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
  for (Index c : grid_stride(channels)) {
    double total0 = 0.0, total1 = 0.0;
    for (int split = 0; split < splits; ++split) {
      total0 += partials[(2 * static_cast<std::size_t>(split)) * channels + c];
      total1 += partials[(2 * static_cast<std::size_t>(split) + 1) * channels + c];
    }
    op.finish(c, total0, total1);
  }
}

// Reduces every channel of x (and dy) viewed as `shape`: planes (NCHW), or columns when
// channels_last or spatial == 1 (rows = batch * spatial). Needs batch * spatial > 0 and
// channels > 0 (callers handle empty inputs). A channel (planes) or tile of channels
// (columns) is split over several blocks to fill the device in whole waves (choose_splits), as
// long as each thread still reads 16 or more units.
template <class Op>
void reduce_per_channel(const float* x, const float* dy, const cpu::BatchNormShape& shape,
                        const Op& op) {
  const int64_t batch = shape.batch, channels = shape.channels, spatial = shape.spatial;
  const bool channels_last = shape.channels_last;
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
      splits = choose_splits(column_blocks, wave_blocks<reduce_columns_kernel<Op, kVec, Index>>(),
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
          choose_splits(channels, wave_blocks<reduce_planes_kernel<Op, kVec, Index>>(), max_splits);
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
  dispatch_index(shape.numel(), [&](auto index_tag) {
    if (vec) {
      run(std::integral_constant<int, 4>{}, index_tag);
    } else {
      run(std::integral_constant<int, 1>{}, index_tag);
    }
  });
}

}  // namespace syncbn::cuda::norm
