#pragma once
// Where a tensor's memory lives: the host, or one CUDA device.
#include <cstddef>
#include <string>

namespace syncbn {

enum class DeviceType { kCpu, kCuda };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device cpu() { return {DeviceType::kCpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::kCuda, index}; }
  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  bool operator==(const Device& other) const = default;
  std::string str() const;  // "cpu" or "cuda:0"
};

// Parses "cpu", "cuda" or "cuda:N"; throws syncbn::Error on anything else.
Device parse_device(const std::string& text);

// True when this build has the CUDA backend compiled in.
bool cuda_compiled();
// Number of visible CUDA devices; 0 without the CUDA backend, an NVIDIA driver or a device.
// Throws syncbn::Error when CUDA is there but broken (e.g. a driver too old for the runtime).
int cuda_device_count();
// Why cuda_device_count() is 0, in words; empty when a device is visible.
std::string cuda_unavailable_reason();

// Makes `device` the current CUDA device of this thread (no-op for the CPU). Every rank calls it
// once at start with its own GPU (local rank % visible devices, docs/DESIGN.md §5).
void set_current_device(Device device);

// Raw memory on a device. CPU memory is 64-byte aligned; CUDA memory comes from the caching
// allocator of the CUDA backend.
void* device_allocate(Device device, std::size_t bytes);
void device_free(Device device, void* ptr) noexcept;
void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes);
void device_set_zero(void* ptr, Device device, std::size_t bytes);

}  // namespace syncbn
