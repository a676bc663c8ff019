#pragma once
// The NCCL backend's shared state (what the communicator, its requests in flight and its
// watchdog share), the CUDA event pool, and the wait on a non-blocking NCCL communicator.
// Internal header of the NCCL backend (src/distributed/nccl_*.cpp); the overview is in
// nccl_communicator.cpp.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/context.h"

namespace syncbn::dist::detail {

using Clock = std::chrono::steady_clock;

// Makes `device` current for a scope, and the previous device current again after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(cuda::current_device()) {
    if (previous_ != device) cuda::set_device(device);
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }  // not checked: a destructor cannot throw
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// Now plus `seconds`; never for seconds <= 0 (no timeout).
Clock::time_point deadline_after(double seconds);

// CUDA events (timing disabled, the cheapest kind) reused across collectives, so that the hot
// path creates none. An event returns to the pool when its last user lets go of it: the request
// that waits on it, and the watchdog that watches it.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  ~EventPool();

  // The caller has made the pool's device current.
  std::shared_ptr<CUevent_st> acquire();

 private:
  void release(cudaEvent_t event) noexcept;

  std::mutex mutex_;
  std::vector<cudaEvent_t> free_;
};

// What the communicator, its requests in flight and its watchdog share. `mutex` guards `comm`
// against ncclCommAbort from the watchdog's side, and decides which thread reports a failure:
// the main thread reports the errors of its own calls (they throw), the watchdog the rest.
struct NcclState {
  int device = 0;
  int size = 1;
  std::mutex mutex;
  ncclComm_t comm = nullptr;    // under `mutex`
  bool ending = false;          // the watchdog is ending the job: no NCCL call may start
  bool comm_aborted = false;    // ncclCommAbort has been called
  bool error_reported = false;  // a call of the main thread threw: it reports, not the watchdog
  std::string ending_reason;
  std::shared_ptr<EventPool> events = std::make_shared<EventPool>();
};

// The watchdog is ending the job (abort_job, within seconds); the main thread must not touch the
// communicator meanwhile, nor report the failure a second time: it waits for the end.
[[noreturn]] void wait_for_job_end(std::unique_lock<std::mutex>& lock, const NcclState& state);

// Waits until the non-blocking `comm` has finished the call that returned `status`. NCCL may
// return ncclSuccess or ncclInProgress and go on in a thread of its own (connecting to peers,
// initialising, splitting); the communicator's state (ncclCommGetAsyncError) says ncclInProgress
// until then, and the result after. Throws syncbn::Error naming `call` on an error, or once
// `deadline` has passed. With `lock` (on state->mutex), the mutex is released while waiting, and
// the wait ends in wait_for_job_end when the watchdog ends the job meanwhile.
void wait_for_nccl(ncclComm_t comm, ncclResult_t status, const char* call,
                   Clock::time_point deadline, std::unique_lock<std::mutex>* lock = nullptr,
                   const NcclState* state = nullptr);

}  // namespace syncbn::dist::detail
