#pragma once
// One checking macro per library: a failed CUDA, cuBLAS, cuDNN or NCCL call throws
// syncbn::Error naming the call, the status's name and the place.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "syncbn/error.h"

namespace syncbn::cuda {

// Whether `status` says a kernel faulted: such an error is sticky, the CUDA context is unusable
// and every later CUDA call in the process returns the same error (CUDA's documentation of each
// code: "the process must be terminated and relaunched"). So the call that returns it is seldom
// the one that failed.
inline bool is_sticky_error(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorAssert:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
      return true;
    default:
      return false;
  }
}

// "cudaErrorInvalidValue (invalid argument)": the code's name and CUDA's description of it.
inline std::string error_text(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}

// SYNCBN_CUDA_CHECK's message: "CUDA call cudaMemcpy(...) failed: cudaErrorInvalidValue (invalid
// argument)". It names CUDA first, and says where a sticky error came from: such an error
// surfaces at whatever call comes next, often in code about something else (a collective, a
// copy), and must not read as that call's or that code's failure.
inline std::string failed_call_text(const char* call, cudaError_t status) {
  std::string text = std::string("CUDA call ") + call + " failed: " + error_text(status);
  if (is_sticky_error(status)) {
    text += "; a CUDA kernel failed before this call, and the CUDA context is unusable";
  }
  return text;
}

}  // namespace syncbn::cuda

#define SYNCBN_CUDA_CHECK(call)                                                             \
  do {                                                                                      \
    cudaError_t status_ = (call);                                                           \
    SYNCBN_CHECK(status_ == cudaSuccess, ::syncbn::cuda::failed_call_text(#call, status_)); \
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
