// The NCCL backend's event ordering (declarations in nccl_request.h).
#include "distributed/nccl_request.h"

#include "cuda/context.h"
#include "distributed/nccl_check.h"

namespace syncbn::dist::detail {

CollectiveState PendingCollective::poll(std::string& error) const {
  const int now = phase.load(std::memory_order_acquire);
  if (now == kIssued) return CollectiveState::kRunning;
  if (now == kAbandoned) return CollectiveState::kDone;
  const cudaError_t status = cudaEventQuery(done.get());
  if (status == cudaSuccess) return CollectiveState::kDone;
  if (status == cudaErrorNotReady) {
    cudaGetLastError();  // "not ready" is no error; keep it out of this thread's last error
    return CollectiveState::kRunning;
  }
  // The watchdog reports "NCCL <op> of ... failed: " + error; error says the failure is CUDA's.
  error = cuda_error_on_collective(status, "cudaEventQuery", "the collective");
  return CollectiveState::kFailed;
}

NcclRequest::~NcclRequest() {
  // The contract: a request destroyed before completion waits for it. Here that orders the
  // compute stream, so memory freed after this is reused only after the allreduce.
  try {
    wait();
  } catch (...) {
  }
}

void NcclRequest::wait() {
  if (waited_ || done_ == nullptr) return;
  DeviceGuard guard(device_);
  const cudaError_t status = cudaStreamWaitEvent(cuda::stream(), done_.get(), 0);
  if (status != cudaSuccess) {
    SYNCBN_FAIL(cuda_error_on_collective(status, "cudaStreamWaitEvent", "the NCCL allreduce"));
  }
  waited_ = true;
}

bool NcclRequest::test() {
  if (done_ == nullptr) return true;
  const cudaError_t status = cudaEventQuery(done_.get());
  if (status == cudaSuccess) return true;
  if (status == cudaErrorNotReady) {
    cudaGetLastError();  // "not ready" must not surface at the next launch check
    return false;
  }
  SYNCBN_FAIL(cuda_error_on_collective(status, "cudaEventQuery", "the NCCL allreduce"));
}

}  // namespace syncbn::dist::detail
