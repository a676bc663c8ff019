#pragma once
// The GPU tests' guard and upload: CI has no GPU, so every GPU test starts with
// SYNCBN_REQUIRE_CUDA() and skips there with the reason.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "syncbn/device.h"
#include "syncbn/tensor.h"

#define SYNCBN_REQUIRE_CUDA()                                                 \
  do {                                                                        \
    if (::syncbn::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
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
