#pragma once
// SYNCBN_NCCL_CHECK(call): a failed NCCL call throws syncbn::Error naming the function, NCCL's
// error string and NCCL's last error message (which often names the peer or the cause:
// "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1000"); and the message for a
// CUDA error met on an NCCL collective. Internal header.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

#include "cuda/check.h"
#include "syncbn/error.h"

namespace syncbn::dist::detail {

// "invalid usage (run with NCCL_DEBUG=WARN for details); NCCL: <last error>"
inline std::string nccl_error_text(ncclResult_t status) {
  std::string text = ncclGetErrorString(status);
  const char* last = ncclGetLastError(nullptr);  // process-wide; the argument is unused
  if (last != nullptr && *last != '\0') {
    text += "; NCCL: ";
    text += last;
  }
  return text;
}

[[noreturn]] inline void throw_nccl_error(ncclResult_t status, const char* call, const char* file,
                                          int line) {
  // The function's name is enough to find the call; the arguments are in the source.
  const std::string function(call, std::strcspn(call, "("));
  ::syncbn::detail::throw_error(function + " failed: " + nccl_error_text(status), file, line);
}

// The message for a CUDA error that `call` (cudaEventQuery, cudaEventRecord, cudaStreamWaitEvent)
// returned on `collective` ("the NCCL allreduce"). The error is CUDA's, not NCCL's; a sticky one
// comes from a kernel that ran before or during the collective (ours or NCCL's), whichever call
// happened to meet it:
//   "a CUDA kernel failed before or during the NCCL allreduce: cudaErrorIllegalAddress (an illegal
//    memory access was encountered); the CUDA context is unusable"
//   "the CUDA call cudaEventQuery for the NCCL allreduce failed: cudaErrorInvalidResourceHandle
//    (invalid resource handle)"
inline std::string cuda_error_on_collective(cudaError_t status, const char* call,
                                            const std::string& collective) {
  if (cuda::is_sticky_error(status)) {
    return "a CUDA kernel failed before or during " + collective + ": " + cuda::error_text(status) +
           "; the CUDA context is unusable";
  }
  return std::string("the CUDA call ") + call + " for " + collective +
         " failed: " + cuda::error_text(status);
}

}  // namespace syncbn::dist::detail

// For calls that complete before they return (ncclGetUniqueId, ncclCommGetAsyncError, calls on a
// blocking communicator). Calls on a non-blocking communicator may also answer ncclInProgress
// and finish later: nccl_state.cpp waits for those (wait_for_nccl).
#define SYNCBN_NCCL_CHECK(call)                                                     \
  do {                                                                              \
    const ncclResult_t status_ = (call);                                            \
    if (status_ != ncclSuccess)                                                     \
      ::syncbn::dist::detail::throw_nccl_error(status_, #call, __FILE__, __LINE__); \
  } while (0)
