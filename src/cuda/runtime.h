#pragma once
// The CUDA runtime surface that the device-neutral code needs, without CUDA types.
// Implemented in runtime.cu when the CUDA backend is built, else in runtime_unavailable.cpp.
#include <cstddef>

namespace syncbn::cuda {

bool compiled();
int device_count();
// Makes `device` current for this thread (defined in context.cu).
void set_device(int device);
void* allocate(int device, std::size_t bytes);
void release(int device, void* ptr) noexcept;
// Copies between host and device memory; the flags say which side is device memory.
void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, std::size_t bytes);
void set_zero(int device, void* ptr, std::size_t bytes);

}  // namespace syncbn::cuda
