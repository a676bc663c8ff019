#pragma once
// Integer helpers shared by host code and CUDA kernels.
#include <cstdint>

#if defined(__CUDACC__)
#define SYNCBN_HOST_DEVICE __host__ __device__
#else
#define SYNCBN_HOST_DEVICE
#endif

namespace syncbn {

// ceil(a / b) for a >= 0, b > 0.
SYNCBN_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace syncbn
