#include "syncbn/device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "cuda/runtime.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

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
std::string cuda_unavailable_reason() { return cuda::unavailable_reason(); }

void set_current_device(Device device) {
  if (device.is_cuda()) cuda::set_device(device.index);
}

namespace {

// Host blocks of 64 KiB and more are cached by size and reused: a training step allocates the
// same activation sizes every time, and returning them to the OS each step (glibc trims or
// unmaps large blocks) costs a page fault per 4 KiB on the next step - thousands per step.
class HostBlockCache {
 public:
  static constexpr std::size_t kMinCached = std::size_t{64} << 10;
  static constexpr std::size_t kAlignment = 64;  // a cache line; also AVX-512 friendly

  void* allocate(std::size_t bytes) {
    const std::size_t size = round_size(bytes);
    if (size >= kMinCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* ptr = it->second.back();
        it->second.pop_back();
        live_[ptr] = size;
        return ptr;
      }
    }
    void* ptr = std::aligned_alloc(kAlignment, size);
    SYNCBN_CHECK(ptr != nullptr, "out of memory allocating ", byte_size_str(double(bytes)), " (",
                 bytes, " bytes) on the CPU");
    if (size >= kMinCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      live_[ptr] = size;
    }
    return ptr;
  }

  void release(void* ptr) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_.find(ptr);
      if (it != live_.end()) {
        free_[it->second].push_back(ptr);
        live_.erase(it);
        return;
      }
    }
    std::free(ptr);
  }

 private:
  static std::size_t round_size(std::size_t bytes) {
    const std::size_t unit = bytes >= kMinCached ? 4096 : kAlignment;
    return std::max<std::size_t>(unit, (bytes + unit - 1) / unit * unit);
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::unordered_map<void*, std::size_t> live_;
};

HostBlockCache& host_cache() {
  // Leaked on purpose: tensors with static lifetime may be freed after it would be destroyed.
  static auto* cache = new HostBlockCache();
  return *cache;
}

}  // namespace

void* device_allocate(Device device, std::size_t bytes) {
  if (device.is_cuda()) return cuda::allocate(device.index, bytes);
  if (bytes == 0) return nullptr;
  return host_cache().allocate(bytes);
}

void device_free(Device device, void* ptr) noexcept {
  if (!ptr) return;
  if (device.is_cuda()) {
    cuda::release(device.index, ptr);
  } else {
    host_cache().release(ptr);
  }
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
  } else {
    // Host memory may be read or freed right after, and another GPU has another stream: wait
    // then. A copy within the current GPU stays queued on its compute stream, which orders it
    // before everything that reads it (evaluation's per-layer copy of the running mean would
    // otherwise drain the GPU once per layer).
    const bool within_current_gpu = dst_device == src_device && dst_device.is_cuda() &&
                                    dst_device.index == cuda::current_device();
    cuda::copy(dst, dst_device.is_cuda(), src, src_device.is_cuda(), bytes, !within_current_gpu);
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
