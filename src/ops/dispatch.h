#pragma once
// The one place where a kernel is chosen by device. Kernels are free functions over raw
// pointers with the same signature in syncbn::cpu and syncbn::cuda; layers call the ops in
// src/ops/, which check shapes and devices and dispatch here. No layer contains an #ifdef.
#include <initializer_list>

#include "syncbn/error.h"
#include "syncbn/tensor.h"

namespace syncbn::ops::detail {

// The device shared by all the defined tensors given; throws naming the op if they differ.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);
[[noreturn]] void no_cuda_kernel(const char* kernel);

}  // namespace syncbn::ops::detail

#if defined(SYNCBN_WITH_CUDA)
#define SYNCBN_CUDA_KERNEL_CALL(kernel, ...) ::syncbn::cuda::kernel(__VA_ARGS__)
#else
#define SYNCBN_CUDA_KERNEL_CALL(kernel, ...) ::syncbn::ops::detail::no_cuda_kernel(#kernel)
#endif

// SYNCBN_DISPATCH(device, kernel, args...) calls cpu::kernel(args...) or cuda::kernel(args...).
#define SYNCBN_DISPATCH(device, kernel, ...)        \
  do {                                              \
    if ((device).is_cuda()) {                       \
      SYNCBN_CUDA_KERNEL_CALL(kernel, __VA_ARGS__); \
    } else {                                        \
      ::syncbn::cpu::kernel(__VA_ARGS__);           \
    }                                               \
  } while (0)
