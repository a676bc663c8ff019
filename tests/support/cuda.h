#pragma once
// The GPU tests' guard and upload: CI has no GPU, so every GPU test starts with
// SYNCBN_REQUIRE_CUDA() and skips there with the reason (fails under SYNCBN_REQUIRE_GPU=1).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "syncbn/device.h"
#include "syncbn/tensor.h"

namespace syncbn::testing {

// SYNCBN_REQUIRE_GPU=1 (tests/cuda/gpu_checks.sh sets it on a GPU machine): a GPU test that
// would skip fails instead, since a GPU check that skipped has not passed.
inline bool gpu_required() {
  const char* value = std::getenv("SYNCBN_REQUIRE_GPU");
  return value != nullptr && std::string(value) == "1";
}

}  // namespace syncbn::testing

// Skips the test with `reason`, or fails it under SYNCBN_REQUIRE_GPU=1.
#define SYNCBN_SKIP_UNLESS_GPU_REQUIRED(reason)                                    \
  do {                                                                             \
    if (::syncbn::testing::gpu_required()) {                                       \
      FAIL() << "SYNCBN_REQUIRE_GPU=1 but this GPU test cannot run: " << (reason); \
    }                                                                              \
    GTEST_SKIP() << (reason);                                                      \
  } while (0)

// First statement of every GPU test: where no device is usable it skips with the reason ("no
// NVIDIA driver is installed"), or fails under SYNCBN_REQUIRE_GPU=1. A CUDA installation that is
// there but broken (a driver too old for the runtime) throws: the test fails, naming it.
#define SYNCBN_REQUIRE_CUDA()                                               \
  do {                                                                      \
    if (::syncbn::cuda_device_count() == 0) {                               \
      SYNCBN_SKIP_UNLESS_GPU_REQUIRED(::syncbn::cuda_unavailable_reason()); \
    }                                                                       \
  } while (0)

namespace syncbn::testing {

// A 1-D tensor on the first GPU holding `values`. With an offset it starts `offset` floats into
// its allocation: offset 1 puts the pointer 4 bytes past a 16-byte boundary, which sends
// vectorised kernels down their scalar path.
inline Tensor on_device(const std::vector<float>& values, int64_t offset = 0) {
  const int64_t n = static_cast<int64_t>(values.size());
  if (offset == 0) return Tensor::from_vector({n}, values, Device::cuda(0));
  Tensor storage = Tensor::zeros({n + offset}, Device::cuda(0));
  Tensor t = storage.view({n}, offset);
  device_copy(t.data(), Device::cuda(0), values.data(), Device::cpu(),
              values.size() * sizeof(float));
  return t;
}

}  // namespace syncbn::testing
