// Built when CMake found no CUDA toolkit (or SYNCBN_CUDA=OFF): every CUDA request is an error.
#include "cuda/runtime.h"
#include "syncbn/error.h"

namespace syncbn::cuda {

namespace {
[[noreturn]] void unavailable() {
  SYNCBN_FAIL(
      "this syncbn build has no CUDA backend (configured with SYNCBN_CUDA=OFF or "
      "without a CUDA toolkit); use --device cpu");
}
}  // namespace

bool compiled() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() {
  return "this syncbn build has no CUDA backend (configured with SYNCBN_CUDA=OFF or without a CUDA "
         "toolkit)";
}
void set_device(int) { unavailable(); }
int current_device() { unavailable(); }
void* allocate(int, std::size_t) { unavailable(); }
void release(int, void*) noexcept {}
void copy(void*, bool, const void*, bool, std::size_t, bool) { unavailable(); }
void set_zero(int, void*, std::size_t) { unavailable(); }

}  // namespace syncbn::cuda
