#pragma once
// The elementwise maps of the normalisation kernels (batch_norm.cu, group_norm.cu); internal to
// src/cuda/. Every elementwise normalisation kernel computes
//   out = a * dy + b * (x - mean) + c      (no dy term in forward)
// with per-element coefficients (mean, a, b, c) from a Coef functor, in the CPU kernels' order
// of operations and without FMA contraction, so that the GPU result equals the CPU one bit for
// bit when the coefficients are equal.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/norm_shape.h"
#include "cuda/primitives.cuh"

namespace syncbn::cuda::norm {

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
  const Index row_units = static_cast<Index>(units_per_row.divisor);
  for (Index base : grid_stride_unrolled<kUnroll>(units)) {
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

// out = a * dy + b * (x - mean) + c over x viewed as `shape`, planes (NCHW) or rows
// (channels_last, or spatial == 1). dy is read when kHasDy. Vectorised (float4) when
// the pointers are 16-byte aligned and a float4 stays in one plane (S % 4 == 0) or one row
// (C % 4 == 0). Launches nothing when empty.
template <bool kHasDy, class Coef>
void launch_affine(const float* x, const float* dy, float* out, const cpu::BatchNormShape& shape,
                   const Coef& coef) {
  const int64_t numel = shape.numel();
  const int64_t channels = shape.channels, spatial = shape.spatial;
  const bool channels_last = shape.channels_last;
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
