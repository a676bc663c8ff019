// The SGD update on the GPU (torch.optim.SGD's arithmetic), fused into one pass per parameter.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/sgd.h"

namespace syncbn::cuda {

namespace {

constexpr int kThreads = 256;

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
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if constexpr (kVector) {
    const int64_t groups = n / 4;
    float4* param4 = reinterpret_cast<float4*>(param);
    const float4* grad4 = reinterpret_cast<const float4*>(grad);
    float4* buffer4 = reinterpret_cast<float4*>(buffer);
    for (int64_t v = first; v < groups; v += step) {
      float4 p = param4[v];
      const float4 g = grad4[v];
      float4 b = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if constexpr (kMomentum && !kFirstStep) b = buffer4[v];
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.x, g.x, b.x, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.y, g.y, b.y, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.z, g.z, b.z, s);
      sgd_element<kMomentum, kFirstStep, kNesterov>(p.w, g.w, b.w, s);
      param4[v] = p;
      if constexpr (kMomentum) buffer4[v] = b;
    }
    tail = groups * 4;
  }
  for (int64_t i = tail + first; i < n; i += step) {
    float p = param[i];
    float b = 0.0f;
    if constexpr (kMomentum && !kFirstStep) b = buffer[i];
    sgd_element<kMomentum, kFirstStep, kNesterov>(p, grad[i], b, s);
    param[i] = p;
    if constexpr (kMomentum) buffer[i] = b;
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

template <bool kMomentum, bool kFirstStep, bool kNesterov>
void launch(float* param, const float* grad, float* buffer, int64_t n, const SgdScalars& s) {
  const bool vector = aligned16(param) && aligned16(grad) && (!kMomentum || aligned16(buffer));
  if (vector) {
    sgd_update_kernel<true, kMomentum, kFirstStep, kNesterov>
        <<<blocks_for((n + 3) / 4, kThreads), kThreads, 0, stream()>>>(param, grad, buffer, n, s);
  } else {
    sgd_update_kernel<false, kMomentum, kFirstStep, kNesterov>
        <<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(param, grad, buffer, n, s);
  }
  SYNCBN_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float weight_decay, float momentum, float dampening, bool nesterov,
                bool first_step) {
  SYNCBN_CHECK(n >= 0, "sgd_update: negative size ", n);
  if (n == 0) return;
  const SgdScalars s{lr, weight_decay, momentum, 1.0f - dampening};
  if (momentum == 0.0f) {
    launch<false, false, false>(param, grad, nullptr, n, s);
    return;
  }
  SYNCBN_CHECK(momentum_buffer != nullptr, "sgd_update: momentum ", momentum,
               " needs a momentum buffer");
  if (first_step) {
    if (nesterov) {
      launch<true, true, true>(param, grad, momentum_buffer, n, s);
    } else {
      launch<true, true, false>(param, grad, momentum_buffer, n, s);
    }
  } else if (nesterov) {
    launch<true, false, true>(param, grad, momentum_buffer, n, s);
  } else {
    launch<true, false, false>(param, grad, momentum_buffer, n, s);
  }
}

}  // namespace syncbn::cuda
