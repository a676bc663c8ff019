// CUDA runtime for the device-neutral code: device count, a caching allocator, copies.
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/runtime.h"
#include "syncbn/error.h"

namespace syncbn::cuda {

namespace {

// Caching allocator: freed blocks are kept per (device, rounded size) and reused, so a training
// step after the first calls neither cudaMalloc nor cudaFree. Sizes round up to 512 bytes below
// 1 MiB and to 2 MiB above, which bounds the waste while keeping the number of bins small.
class CachingAllocator {
 public:
  void* allocate(int device, std::size_t bytes) {
    const std::size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& bin = free_blocks_[{device, size}];
    if (!bin.empty()) {
      void* ptr = bin.back();
      bin.pop_back();
      live_[ptr] = {device, size};
      return ptr;
    }
    int previous = 0;
    SYNCBN_CUDA_CHECK(cudaGetDevice(&previous));
    SYNCBN_CUDA_CHECK(cudaSetDevice(device));
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      // Give the cache back to the driver and try once more before failing.
      cudaGetLastError();
      release_cached_locked();
      status = cudaMalloc(&ptr, size);
    }
    cudaSetDevice(previous);
    SYNCBN_CUDA_CHECK(status);
    live_[ptr] = {device, size};
    return ptr;
  }

  void release(void* ptr) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return;
    free_blocks_[it->second].push_back(ptr);
    live_.erase(it);
  }

 private:
  using Key = std::pair<int, std::size_t>;

  static std::size_t round_size(std::size_t bytes) {
    constexpr std::size_t kSmall = 512, kLarge = 2 << 20;
    const std::size_t unit = bytes < (1 << 20) ? kSmall : kLarge;
    return (bytes + unit - 1) / unit * unit + (bytes == 0 ? unit : 0);
  }

  void release_cached_locked() noexcept {
    for (auto& [key, blocks] : free_blocks_) {
      for (void* ptr : blocks) cudaFree(ptr);
      blocks.clear();
    }
  }

  std::mutex mutex_;
  std::map<Key, std::vector<void*>> free_blocks_;
  std::unordered_map<void*, Key> live_;
};

CachingAllocator& allocator() {
  // Intentionally leaked: blocks may be released during static destruction, after the CUDA
  // context is gone; the driver reclaims everything at exit.
  static auto* instance = new CachingAllocator();
  return *instance;
}

}  // namespace

bool compiled() { return true; }

namespace {

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// The device count, or why there is none: only "no driver installed" and "no device" mean a
// CPU machine; every other failure (a driver too old for this runtime, a broken installation)
// is an error, so that a GPU node never trains on its CPU without saying so.
struct DeviceQuery {
  int count = 0;
  std::string reason;  // why count is 0
};

DeviceQuery query_devices() {
  DeviceQuery query;
  const cudaError_t status = cudaGetDeviceCount(&query.count);
  if (status == cudaSuccess) {
    if (query.count == 0) query.reason = "no CUDA device is visible";
    return query;
  }
  cudaGetLastError();  // clear it: it is answered here
  query.count = 0;
  int driver = 0;
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  if (status == cudaErrorNoDevice) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    query.reason = std::string("no CUDA device is visible") +
                   (visible != nullptr ? " (CUDA_VISIBLE_DEVICES=" + std::string(visible) + ")"
                                       : std::string());
    return query;
  }
  if (status == cudaErrorInsufficientDriver && driver == 0) {
    query.reason = "no NVIDIA driver is installed";
    return query;
  }
  if (status == cudaErrorInsufficientDriver) {
    SYNCBN_FAIL("the NVIDIA driver supports CUDA ", version_text(driver),
                " but this build's CUDA runtime is ", version_text(runtime),
                " (cudaErrorInsufficientDriver): update the driver, or use --device cpu");
  }
  SYNCBN_FAIL("cudaGetDeviceCount failed: ", cudaGetErrorName(status), " (",
              cudaGetErrorString(status), "); driver CUDA ", version_text(driver), ", runtime ",
              version_text(runtime), ". Use --device cpu to train without the GPU");
}

}  // namespace

int device_count() { return query_devices().count; }

std::string unavailable_reason() { return query_devices().reason; }

void* allocate(int device, std::size_t bytes) { return allocator().allocate(device, bytes); }

void release(int, void* ptr) noexcept { allocator().release(ptr); }

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, std::size_t bytes,
          bool wait) {
  const cudaMemcpyKind kind =
      dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                    : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  // On the compute stream, so the copy sees every kernel queued before it.
  SYNCBN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream()));
  if (wait) synchronize();
}

void set_zero(int device, void* ptr, std::size_t bytes) {
  int previous = current_device();
  set_device(device);
  SYNCBN_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream()));
  set_device(previous);
}

}  // namespace syncbn::cuda
