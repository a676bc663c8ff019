#include "syncbn/device.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "cuda/runtime.h"
#include "syncbn/error.h"

namespace syncbn {

std::string Device::str() const {
  return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
}

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    SYNCBN_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos,
                 "invalid device '", text, "': expected cpu, cuda or cuda:N");
    return Device::cuda(std::stoi(digits));
  }
  SYNCBN_FAIL("invalid device '", text, "': expected cpu, cuda or cuda:N");
}

bool cuda_compiled() { return cuda::compiled(); }
int cuda_device_count() { return cuda::device_count(); }

void set_current_device(Device device) {
  if (device.is_cuda()) cuda::set_device(device.index);
}

void* device_allocate(Device device, std::size_t bytes) {
  if (device.is_cuda()) return cuda::allocate(device.index, bytes);
  if (bytes == 0) return nullptr;
  constexpr std::size_t kAlignment = 64;  // a cache line; also AVX-512 friendly
  void* ptr = std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  if (!ptr) throw std::bad_alloc();
  return ptr;
}

void device_free(Device device, void* ptr) noexcept {
  if (!ptr) return;
  if (device.is_cuda()) {
    cuda::release(device.index, ptr);
  } else {
    std::free(ptr);
  }
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
  } else {
    cuda::copy(dst, dst_device.is_cuda(), src, src_device.is_cuda(), bytes);
  }
}

void device_set_zero(void* ptr, Device device, std::size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cuda()) {
    cuda::set_zero(device.index, ptr, bytes);
  } else {
    std::memset(ptr, 0, bytes);
  }
}

}  // namespace syncbn
