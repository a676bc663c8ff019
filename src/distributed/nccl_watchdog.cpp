// The NCCL backend's CommWatchdog (declaration in nccl_watchdog.h).
#include "distributed/nccl_watchdog.h"

#include <chrono>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "cuda/context.h"
#include "distributed/nccl_check.h"
#include "syncbn/distributed/runtime.h"

namespace syncbn::dist::detail {

namespace {

// The watchdog's last act: abort the NCCL communicator, so that this rank's NCCL kernels return
// and nothing waits on them, then end the job with the message. ncclCommAbort runs on a thread of
// its own and gets at most 10 s: it can itself hang in some NCCL versions (NVIDIA/nccl#829), and
// ending the job is what matters.
[[noreturn]] void abort_communicator_and_end_job(const std::shared_ptr<NcclState>& state,
                                                 const std::string& message) {
  try {
    auto finished = std::make_shared<std::promise<void>>();
    std::future<void> aborted = finished->get_future();
    std::thread([state, finished, message] {
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (!state->ending) {
          state->ending = true;
          state->ending_reason = message;
        }
        if (!state->comm_aborted && state->comm != nullptr) {
          state->comm_aborted = true;
          cudaSetDevice(state->device);
          ncclCommAbort(state->comm);  // not checked: the job ends either way
        }
      }
      finished->set_value();
    }).detach();
    aborted.wait_for(std::chrono::seconds(10));
  } catch (...) {
    // No thread for the abort: end the job without it.
  }
  abort_job(message);
}

}  // namespace

std::unique_ptr<CommWatchdog> make_nccl_watchdog(const std::shared_ptr<NcclState>& state) {
  CommWatchdog::Options options;
  options.backend = "NCCL";
  options.comm_size = state->size;
  options.timeout_seconds = comm_timeout_seconds();
  const int device = state->device;
  options.thread_setup = [device] { cuda::set_device(device); };
  // Under the state's lock, when free: then no call of the main thread is running, and an
  // error the main thread has met (and reports) is told apart from one nobody has seen.
  auto health = [state]() -> std::string {
    std::unique_lock<std::mutex> lock(state->mutex, std::try_to_lock);
    if (!lock.owns_lock() || state->error_reported || state->comm == nullptr) return {};
    ncclResult_t error = ncclSuccess;
    const ncclResult_t status = ncclCommGetAsyncError(state->comm, &error);
    if (status != ncclSuccess) error = status;
    if (error == ncclSuccess || error == ncclInProgress) return {};
    std::ostringstream out;
    out << "NCCL communicator of " << state->size << (state->size == 1 ? " rank" : " ranks")
        << " on cuda:" << state->device
        << " reported an asynchronous error: " << detail::nccl_error_text(error);
    state->ending = true;  // from here on, the main thread waits for the end of the job
    state->ending_reason = out.str();
    return out.str();
  };
  auto on_failure = [state](const std::string& message) {
    abort_communicator_and_end_job(state, message);
  };
  return std::make_unique<CommWatchdog>(std::move(options), std::move(health),
                                        std::move(on_failure));
}

}  // namespace syncbn::dist::detail
