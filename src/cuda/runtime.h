#pragma once
// The CUDA runtime surface that the device-neutral code needs, without CUDA types.
// Implemented in runtime.cu when the CUDA backend is built, else in runtime_unavailable.cpp.
#include <cstddef>
#include <string>

namespace syncbn::cuda {

bool compiled();
// The number of usable CUDA devices: 0 without an NVIDIA driver or a visible device (a CPU
// machine). Throws syncbn::Error for any other failure, such as a driver too old for this
// build's CUDA runtime, instead of looking like a machine without a GPU.
int device_count();
// Why device_count() is 0, in words ("no NVIDIA driver is installed"); empty when it is not.
std::string unavailable_reason();
// Makes `device` current for this thread, and reads it (defined in context.cu).
void set_device(int device);
int current_device();
void* allocate(int device, std::size_t bytes);
void release(int device, void* ptr) noexcept;
// Copies between host and device memory on the compute stream; the flags say which side is
// device memory. With `wait` it returns once the copy is done; without, it stays queued.
void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, std::size_t bytes,
          bool wait);
void set_zero(int device, void* ptr, std::size_t bytes);

}  // namespace syncbn::cuda
