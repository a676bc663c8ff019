#pragma once
// The NCCL backend's ordering by CUDA events: a collective as the watchdog sees it
// (PendingCollective) and a non-blocking allreduce in flight (NcclRequest). Internal header of the
// NCCL backend; the stream diagram is in nccl_communicator.cpp.
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "distributed/comm_watchdog.h"
#include "distributed/nccl_state.h"
#include "syncbn/distributed/communicator.h"

namespace syncbn::dist::detail {

// One collective as the watchdog sees it: issued (NCCL may still be connecting), enqueued (the
// event `done` is recorded after it), or abandoned (the call threw, and the error travels with
// the exception).
struct PendingCollective {
  enum Phase : int { kIssued, kEnqueued, kAbandoned };
  std::atomic<int> phase{kIssued};
  std::shared_ptr<CUevent_st> done;

  CollectiveState poll(std::string& error) const;
};

// A non-blocking allreduce in flight on the communication stream.
class NcclRequest final : public Request {
 public:
  // done == nullptr: already complete (an empty or host-memory allreduce).
  NcclRequest(int device, std::shared_ptr<CUevent_st> done)
      : device_(device), done_(std::move(done)) {}

  ~NcclRequest() override;

  void wait() override;
  bool test() override;

 private:
  int device_;
  std::shared_ptr<CUevent_st> done_;
  bool waited_ = false;
};

}  // namespace syncbn::dist::detail
