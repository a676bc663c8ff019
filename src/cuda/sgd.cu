// The SGD update on the GPU (torch.optim.SGD's arithmetic), fused into one pass per parameter.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/primitives.cuh"
#include "cuda/sgd.h"

namespace syncbn::cuda {

namespace {

struct SgdScalars {
  float lr, weight_decay, momentum, buffer_scale;  // buffer_scale = 1 - dampening
};

// One element of the update (see cpu/sgd.h), with the CPU kernel's roundings: every product is
// rounded before it is added (__fmul_rn is never fused into an FMA), so the result is the CPU's
// bit for bit.
//   d = g + weight_decay * p
//   momentum:  b = d (first step) or momentum * b + (1 - dampening) * d;
//              d = nesterov ? d + momentum * b : b
//   p = p - lr * d
template <bool kMomentum, bool kFirstStep, bool kNesterov>
__device__ __forceinline__ void sgd_element(float& p, float g, float& b, const SgdScalars& s) {
  float d = __fadd_rn(g, __fmul_rn(s.weight_decay, p));
  if constexpr (kMomentum) {
    if constexpr (kFirstStep) {
      b = d;
    } else {
      b = __fadd_rn(__fmul_rn(s.momentum, b), __fmul_rn(s.buffer_scale, d));
    }
    if constexpr (kNesterov) {
      d = __fadd_rn(d, __fmul_rn(s.momentum, b));
    } else {
      d = b;
    }
  }
  p = __fsub_rn(p, __fmul_rn(s.lr, d));
}

// Each thread owns elements i, i + G, ... (G = threads in the grid), or with kVector (all
// pointers 16-byte aligned) float4 groups that way and then the n % 4 tail elements: it reads
// param, grad and (with momentum) the buffer once and writes param and the buffer once. The
// buffer is neither read nor written without momentum, and only written on the first step.
template <bool kVector, bool kMomentum, bool kFirstStep, bool kNesterov>
__global__ void sgd_update_kernel(float* param, const float* grad, float* buffer, int64_t n,
                                  SgdScalars s) {
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    for (int64_t v : grid_stride(groups)) {
      float4 p = load_float4(param + 4 * v);
      const float4 g = load_float4(grad + 4 * v);
      float4 b = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if constexpr (kMomentum && !kFirstStep) b = load_float4(buffer + 4 * v);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.x, g.x, b.x, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.y, g.y, b.y, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.z, g.z, b.z, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.w, g.w, b.w, s);
      store_float4(param + 4 * v, p);
      if constexpr (kMomentum) store_float4(buffer + 4 * v, b);
    }
    tail = groups * 4;
  }
  for (int64_t i : grid_stride(tail, n)) {
    float p = param[i];
    float b = 0.0f;
    if constexpr (kMomentum && !kFirstStep) b = buffer[i];
    sgd_element<kMomentum, kFirstStep, kNesterov>(p, grad[i], b, s);
    param[i] = p;
    if constexpr (kMomentum) buffer[i] = b;
  }
}

template <bool kMomentum, bool kFirstStep, bool kNesterov>
void launch_update(float* param, const float* grad, float* buffer, int64_t n, const SgdScalars& s) {
  const bool vector =
      is_aligned16(param) && is_aligned16(grad) && (!kMomentum || is_aligned16(buffer));
  if (vector) {
    launch(sgd_update_kernel<true, kMomentum, kFirstStep, kNesterov>, blocks_for(ceil_div(n, 4)),
           kThreads, param, grad, buffer, n, s);
  } else {
    launch(sgd_update_kernel<false, kMomentum, kFirstStep, kNesterov>, blocks_for(n), kThreads,
           param, grad, buffer, n, s);
  }
}

}  // namespace

void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float weight_decay, float momentum, float dampening, bool nesterov,
                bool first_step) {
  SYNCBN_CHECK(n >= 0, "sgd_update: negative size ", n);
  if (n == 0) return;
  const SgdScalars s{lr, weight_decay, momentum, 1.0f - dampening};
  if (momentum == 0.0f) {
    launch_update<false, false, false>(param, grad, nullptr, n, s);
    return;
  }
  SYNCBN_CHECK(momentum_buffer != nullptr, "sgd_update: momentum ", momentum,
               " needs a momentum buffer");
  if (first_step) {
    if (nesterov) {
      launch_update<true, true, true>(param, grad, momentum_buffer, n, s);
    } else {
      launch_update<true, true, false>(param, grad, momentum_buffer, n, s);
    }
  } else if (nesterov) {
    launch_update<true, false, true>(param, grad, momentum_buffer, n, s);
  } else {
    launch_update<true, false, false>(param, grad, momentum_buffer, n, s);
  }
}

}  // namespace syncbn::cuda
