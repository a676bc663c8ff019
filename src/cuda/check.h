#pragma once
// SYNCBN_CUDA_CHECK wraps every CUDA runtime call: a failure throws syncbn::Error naming the
// call, the error's name and the place.
#include <cuda_runtime.h>

#include "syncbn/error.h"

#define SYNCBN_CUDA_CHECK(call)                                                          \
  do {                                                                                   \
    cudaError_t status_ = (call);                                                        \
    SYNCBN_CHECK(status_ == cudaSuccess, #call, " failed: ", cudaGetErrorName(status_), \
                 " (", cudaGetErrorString(status_), ")");                                \
  } while (0)
