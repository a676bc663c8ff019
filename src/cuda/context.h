#pragma once
// The CUDA runtime context of this process: one device (chosen once, by local rank), one
// non-blocking compute stream per device on which every kernel, cuBLAS and cuDNN call and
// host<->device copy of syncbn runs (so stream order is program order, and the caching
// allocator may reuse a freed block at once), and the library handles bound to that stream.
// Internal header: CUDA types are fine here, never in include/.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/runtime.h"

namespace syncbn::cuda {

// The compute stream of the current device (created on first use).
cudaStream_t stream();
cublasHandle_t cublas();
cudnnHandle_t cudnn();
// Waits for all work queued on the current device's compute stream.
void synchronize();

}  // namespace syncbn::cuda
