// The NCCL backend's shared state, event pool and wait on a non-blocking communicator
// (declarations and contracts in nccl_state.h).
#include "distributed/nccl_state.h"

#include <thread>

#include "cuda/check.h"
#include "distributed/comm_watchdog.h"
#include "distributed/nccl_check.h"
#include "syncbn/error.h"

namespace syncbn::dist::detail {

Clock::time_point deadline_after(double seconds) {
  if (seconds <= 0) return Clock::time_point::max();
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

EventPool::~EventPool() {
  for (cudaEvent_t event : free_) cudaEventDestroy(event);  // not checked: may run at exit
}

std::shared_ptr<CUevent_st> EventPool::acquire() {
  cudaEvent_t event = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!free_.empty()) {
      event = free_.back();
      free_.pop_back();
    }
  }
  if (event == nullptr) {
    SYNCBN_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  std::shared_ptr<EventPool> self = shared_from_this();
  return std::shared_ptr<CUevent_st>(event, [self](cudaEvent_t e) { self->release(e); });
}

void EventPool::release(cudaEvent_t event) noexcept {
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(event);
  } catch (...) {
    cudaEventDestroy(event);
  }
}

[[noreturn]] void wait_for_job_end(std::unique_lock<std::mutex>& lock, const NcclState& state) {
  const std::string reason = state.ending_reason;
  lock.unlock();
  std::this_thread::sleep_for(std::chrono::seconds(60));
  SYNCBN_FAIL("the NCCL communicator on cuda:", state.device,
              " was aborted by its watchdog, and the job did not end: ", reason);
}

void wait_for_nccl(ncclComm_t comm, ncclResult_t status, const char* call,
                   Clock::time_point deadline, std::unique_lock<std::mutex>* lock,
                   const NcclState* state) {
  for (int round = 0;; ++round) {
    if (status != ncclSuccess && status != ncclInProgress) {
      detail::throw_nccl_error(status, call, __FILE__, __LINE__);
    }
    ncclResult_t progress = ncclSuccess;
    SYNCBN_NCCL_CHECK(ncclCommGetAsyncError(comm, &progress));
    if (progress == ncclSuccess) return;
    if (progress != ncclInProgress) detail::throw_nccl_error(progress, call, __FILE__, __LINE__);
    if (Clock::now() > deadline) {
      SYNCBN_FAIL(call, " did not complete within SYNCBN_COMM_TIMEOUT (", comm_timeout_seconds(),
                  " s): a rank may be missing or stopped");
    }
    if (lock != nullptr) lock->unlock();
    // Connecting takes milliseconds to seconds: yield at first, then sleep a little.
    if (round < 1000) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (lock != nullptr) {
      lock->lock();
      if (state->ending) wait_for_job_end(*lock, *state);
    }
    status = ncclSuccess;
  }
}

}  // namespace syncbn::dist::detail
