#pragma once
// One checking macro per library: a failed CUDA, cuBLAS, cuDNN or NCCL call throws
// syncbn::Error naming the call, the status's name and the place.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "syncbn/error.h"

#define SYNCBN_CUDA_CHECK(call)                                                               \
  do {                                                                                        \
    cudaError_t status_ = (call);                                                             \
    SYNCBN_CHECK(status_ == cudaSuccess, #call, " failed: ", cudaGetErrorName(status_), " (", \
                 cudaGetErrorString(status_), ")");                                           \
  } while (0)

// After a kernel launch: reports launch-configuration errors at the launch site.
#define SYNCBN_CUDA_CHECK_LAUNCH() SYNCBN_CUDA_CHECK(cudaGetLastError())

#define SYNCBN_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    cublasStatus_t status_ = (call);                                                              \
    SYNCBN_CHECK(status_ == CUBLAS_STATUS_SUCCESS, #call,                                         \
                 " failed: ", cublasGetStatusName(status_), " (", cublasGetStatusString(status_), \
                 ")");                                                                            \
  } while (0)

#define SYNCBN_CUDNN_CHECK(call)                             \
  do {                                                       \
    cudnnStatus_t status_ = (call);                          \
    SYNCBN_CHECK(status_ == CUDNN_STATUS_SUCCESS, #call,     \
                 " failed: ", cudnnGetErrorString(status_)); \
  } while (0)
