// Softmax cross-entropy over rows of logits (N, K) on the GPU, with the CPU kernel's rules: the
// log-sum-exp is shifted by the row's maximum, the exponentials are summed in double, and the
// hit test uses the first argmax of the row.
#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/loss.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda {

namespace {

constexpr unsigned int kFullMask = 0xffffffffu;

// Whether (value, index) beats (best, best_index) in the search for the first maximum: a larger
// value, or the same value at a smaller index. NaN never wins (both comparisons are false). The
// rule is associative and commutative, so any reduction tree gives the same pair.
__device__ __forceinline__ bool beats(float value, long long index, float best,
                                      long long best_index) {
  return value > best || (value == best && index < best_index);
}

// One warp owns row i (grid-stride over rows).
//  1. Each lane scans its columns j = lane, lane + 32, ... for the first maximum of the non-NaN
//     values; a butterfly of shuffles merges the 32 (value, index) pairs with `beats`. This is
//     the CPU's left-to-right scan `if (row[j] > row[argmax]) argmax = j`, which never moves onto
//     a NaN and stays on column 0 when column 0 is NaN (handled after the merge).
//  2. sum = sum_j exp(row[j] - max), each exponential rounded to float as on the CPU, added in
//     double per lane and merged by shuffles (the CPU adds them in double, left to right).
//  3. probabilities[i][j] = exp(row[j] - max) * float(1 / sum); lane 0 writes
//     losses[i] = max + log(sum) - row[label] (in double) and hits[i] = (argmax == label).
__global__ void softmax_cross_entropy_forward_kernel(const float* logits, const int32_t* labels,
                                                     int64_t n, int64_t k, float* probabilities,
                                                     float* losses, float* hits) {
  const int lane = threadIdx.x % 32;
  for (int64_t i : grid_stride_warps(n)) {
    const float* row = logits + i * k;
    float* prob = probabilities + i * k;

    float best = -INFINITY;
    long long best_index = LLONG_MAX;  // no candidate yet: any non-NaN value, even -inf, beats it
    for (int64_t j = lane; j < k; j += 32) {
      const float v = row[j];
      if (beats(v, j, best, best_index)) {
        best = v;
        best_index = j;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(kFullMask, best, offset);
      const long long other_index = __shfl_xor_sync(kFullMask, best_index, offset);
      if (beats(other, other_index, best, best_index)) {
        best = other;
        best_index = other_index;
      }
    }
    const int64_t argmax = isnan(row[0]) ? 0 : static_cast<int64_t>(best_index);
    const float max = row[argmax];

    double sum = 0.0;
    for (int64_t j = lane; j < k; j += 32) sum += static_cast<double>(expf(row[j] - max));
    sum = warp_all_sum(sum);

    const float inverse_sum = static_cast<float>(1.0 / sum);
    for (int64_t j = lane; j < k; j += 32) prob[j] = expf(row[j] - max) * inverse_sum;
    if (lane == 0) {
      const int32_t label = labels[i];
      losses[i] =
          static_cast<float>(static_cast<double>(max) + log(sum) - static_cast<double>(row[label]));
      hits[i] = argmax == label ? 1.0f : 0.0f;
    }
  }
}

// Each thread owns elements e = i * K + j of dlogits (grid-stride):
// dlogits = scale * prob, minus scale where j is the row's label (two roundings, as on the CPU).
template <class Index>
__global__ void softmax_cross_entropy_backward_kernel(const float* probabilities,
                                                      const int32_t* labels, Index total, Index k,
                                                      float scale, float* dlogits) {
  for (Index e : grid_stride(total)) {
    const Index i = e / k;
    const Index j = e - i * k;
    float g = __fmul_rn(scale, probabilities[e]);
    if (static_cast<int64_t>(j) == labels[i]) g = __fsub_rn(g, scale);
    dlogits[e] = g;
  }
}

}  // namespace

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                   float* probabilities, float* losses, float* hits) {
  SYNCBN_CHECK(n >= 0 && k >= 0, "softmax_cross_entropy_forward: negative size (", n, ", ", k, ")");
  if (n == 0) return;
  SYNCBN_CHECK(k > 0, "softmax_cross_entropy_forward: ", n, " rows of no classes");
  launch(softmax_cross_entropy_forward_kernel, blocks_for(n, kWarpsPerBlock), kThreads, logits,
         labels, n, k, probabilities, losses, hits);
}

void softmax_cross_entropy_backward(const float* probabilities, const int32_t* labels, int64_t n,
                                    int64_t k, float scale, float* dlogits) {
  SYNCBN_CHECK(n >= 0 && k >= 0, "softmax_cross_entropy_backward: negative size (", n, ", ", k,
               ")");
  const int64_t total = n * k;
  if (total == 0) return;
  dispatch_index<int64_t>(total, [&](auto index_tag) {
    using Index = decltype(index_tag);
    launch(softmax_cross_entropy_backward_kernel<Index>, blocks_for(total), kThreads, probabilities,
           labels, static_cast<Index>(total), static_cast<Index>(k), scale, dlogits);
  });
}

}  // namespace syncbn::cuda
