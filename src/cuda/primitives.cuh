#pragma once
// The shared vocabulary of the CUDA kernels (internal to src/cuda/, compiled as CUDA C++17):
// every .cu file that launches a kernel takes these from here, so each is defined once.
// defines:
//   launching   kThreads, kWarpsPerBlock, kUnroll, blocks_for, ceil_div (util/math.h), launch
//   indices     dispatch_index (32- or 64-bit index arithmetic), IndexDivider (fast division)
//   loops       StrideRange, grid_stride, grid_stride_unrolled, grid_stride_warps,
//               grid_stride_blocks: for (Index i : grid_stride(n)) is the grid-stride loop
//   memory      is_aligned16, load_float4, load_float4_readonly, store_float4, load_vec,
//               store_vec, Scratch (device scratch memory for the duration of a host function)
//   reductions  warp_sum, warp_all_sum, block_sum (fixed shuffle trees: deterministic)
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/runtime.h"
#include "util/math.h"

namespace syncbn::cuda {

// ---- Launching -------------------------------------------------------------------------------

constexpr int kThreads = 256;  // threads per block, unless a kernel states otherwise
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kUnroll = 4;  // loads in flight per thread and iteration of an unrolled loop

// Blocks of `threads` covering n elements, at least 1 and capped for grid-stride loops.
inline unsigned int blocks_for(long long n, int threads = kThreads,
                               unsigned int max_blocks = 65535u * 8u) {
  long long blocks = ceil_div(n, threads);
  if (blocks < 1) blocks = 1;
  return blocks > max_blocks ? max_blocks : static_cast<unsigned int>(blocks);
}

// kernel<<<grid, block, 0, stream()>>>(args...), then the launch check.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, const Args&... args) {
  kernel<<<grid, block, 0, stream()>>>(args...);
  SYNCBN_CUDA_CHECK_LAUNCH();
}

// ---- Indices ---------------------------------------------------------------------------------

// Index arithmetic runs in uint32_t when the tensor has fewer than 2^31 elements (every index
// and every divisor then fits, and a grid-stride index stays below 2^32 after its last step),
// else in Wide. f receives a value of the index type.
template <class Wide = uint64_t, class F>
void dispatch_index(int64_t numel, F&& f) {
  if (numel < (int64_t{1} << 31)) {
    f(uint32_t{0});
  } else {
    f(Wide{0});
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

// ---- Grid-stride loops -----------------------------------------------------------------------

// The indices first, first + step, ... below last, for a range-based for.
template <class Index>
struct StrideRange {
  Index first, last, step;

  struct Iterator {
    Index index, step;
    __device__ __forceinline__ Index operator*() const { return index; }
    __device__ __forceinline__ Iterator& operator++() {
      index += step;
      return *this;
    }
    // "Not done" is index < last, not index != last: the final step may jump past last.
    __device__ __forceinline__ bool operator!=(const Iterator& end) const {
      return index < end.index;
    }
  };
  __device__ __forceinline__ Iterator begin() const { return {first, step}; }
  __device__ __forceinline__ Iterator end() const { return {last, step}; }
};

// Thread t of the grid (t = blockIdx.x * blockDim.x + threadIdx.x, T threads in all) owns the
// indices begin + t, begin + t + T, ... below end.
template <class Index>
__device__ __forceinline__ StrideRange<Index> grid_stride(Index begin, Index end) {
  return {begin + (static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x), end,
          static_cast<Index>(blockDim.x) * gridDim.x};
}
template <class Index>
__device__ __forceinline__ StrideRange<Index> grid_stride(Index n) {
  return grid_stride(Index{0}, n);
}

// Blocks of kThreads threads, each thread taking kUnroll indices kThreads apart per iteration:
// for (Index base : grid_stride_unrolled<kUnroll>(n)) the thread owns base + k * kThreads,
// k < kUnroll, of those below n (a block covers kThreads * kUnroll consecutive indices).
template <int kUnroll, class Index>
__device__ __forceinline__ StrideRange<Index> grid_stride_unrolled(Index n) {
  return {static_cast<Index>(blockIdx.x) * (kThreads * kUnroll) + threadIdx.x, n,
          static_cast<Index>(gridDim.x) * (kThreads * kUnroll)};
}

// Blocks of kThreads threads: warp w of the grid (kWarpsPerBlock per block) owns the indices
// w, w + W, ... below n (W warps in all); every lane of the warp gets the same indices.
template <class Index>
__device__ __forceinline__ StrideRange<Index> grid_stride_warps(Index n) {
  return {static_cast<Index>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32, n,
          static_cast<Index>(gridDim.x) * kWarpsPerBlock};
}

// Block b of the grid owns the indices b, b + gridDim.x, ... below n; every thread of the block
// gets the same indices.
template <class Index>
__device__ __forceinline__ StrideRange<Index> grid_stride_blocks(Index n) {
  return {static_cast<Index>(blockIdx.x), n, static_cast<Index>(gridDim.x)};
}

// ---- Memory ----------------------------------------------------------------------------------

inline bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Four floats at p (16-byte aligned) in one access.
__device__ __forceinline__ float4 load_float4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
// Through the read-only data cache: only for memory that no thread writes during the kernel.
__device__ __forceinline__ float4 load_float4_readonly(const float* p) {
  return __ldg(reinterpret_cast<const float4*>(p));
}
__device__ __forceinline__ void store_float4(float* p, float4 v) {
  *reinterpret_cast<float4*>(p) = v;
}

// kVec (1 or 4) consecutive read-only floats at p into v, as one float4 when kVec == 4 (p then
// 16-byte aligned).
template <int kVec>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 t = load_float4_readonly(p);
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
    store_float4(p, make_float4(v[0], v[1], v[2], v[3]));
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) p[j] = v[j];
  }
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

// ---- Reductions ------------------------------------------------------------------------------

// Sum over the 32 lanes of a warp, ((v0 + v16) + (v8 + v24)) + ... by shuffle-down steps of
// 16, 8, 4, 2, 1: valid in lane 0.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The same tree by butterfly (xor) shuffles, so that every lane ends with the sum.
template <class T>
__device__ __forceinline__ T warp_all_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of v over a 1-D block of kBlockThreads threads (a multiple of 32, at most 1024), valid in
// thread 0: warp_sum in each warp, then warp_sum over the warps' sums in warp 0. shared holds
// kBlockThreads/32 values; the function ends with a barrier, so it may be called again at once.
template <int kBlockThreads = kThreads>
__device__ __forceinline__ double block_sum(double v, double* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kBlockThreads / 32 ? shared[lane] : 0.0;
    v = warp_sum(v);
  }
  __syncthreads();
  return v;
}

// The same for two sums (a, b) at once, with shared holding kBlockThreads/32 pairs.
template <int kBlockThreads = kThreads>
__device__ __forceinline__ double2 block_sum(double a, double b, double2* shared) {
  a = warp_sum(a);
  b = warp_sum(b);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = make_double2(a, b);
  __syncthreads();
  if (warp == 0) {
    a = lane < kBlockThreads / 32 ? shared[lane].x : 0.0;
    b = lane < kBlockThreads / 32 ? shared[lane].y : 0.0;
    a = warp_sum(a);
    b = warp_sum(b);
  }
  __syncthreads();
  return make_double2(a, b);
}

}  // namespace syncbn::cuda
