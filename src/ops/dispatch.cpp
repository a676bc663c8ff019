#include "ops/dispatch.h"

namespace syncbn::ops::detail {

Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  bool found = false;
  Device device;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!found) {
      device = t->device();
      found = true;
    } else {
      SYNCBN_CHECK(t->device() == device, op, ": tensors on different devices (", device.str(),
                   " and ", t->device().str(), ")");
    }
  }
  return device;
}

void no_cuda_kernel(const char* kernel) {
  SYNCBN_FAIL("kernel '", kernel, "' has no CUDA implementation in this build; use --device cpu");
}

}  // namespace syncbn::ops::detail
