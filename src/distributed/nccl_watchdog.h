#pragma once
// The NCCL backend's CommWatchdog: its health check (ncclCommGetAsyncError) and its last act
// (ncclCommAbort, then abort_job). Internal header of the NCCL backend; the failure design is in
// nccl_communicator.cpp.
#include <memory>

#include "distributed/comm_watchdog.h"
#include "distributed/nccl_state.h"

namespace syncbn::dist::detail {

// A watchdog over the collectives of the communicator that `state` describes; its thread runs on
// state->device. On a failure it aborts the NCCL communicator and ends the job.
std::unique_ptr<CommWatchdog> make_nccl_watchdog(const std::shared_ptr<NcclState>& state);

}  // namespace syncbn::dist::detail
