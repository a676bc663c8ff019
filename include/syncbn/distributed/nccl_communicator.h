#pragma once
// The NCCL backend of Communicator: collectives on GPU memory, in CUDA stream order. No CUDA or
// NCCL types here; the implementation is src/distributed/nccl_communicator.cpp and the other
// src/distributed/nccl_*.cpp (built where CMake finds NCCL; elsewhere
// src/distributed/nccl_unavailable.cpp, whose factory throws).
//
//   syncbn::dist::Runtime runtime;                   // MPI: rank, size, local rank
//   auto world = runtime.world();
//   int device = world->local_rank() % syncbn::cuda_device_count();
//   syncbn::set_current_device(syncbn::Device::cuda(device));
//   auto nccl = syncbn::dist::make_nccl_communicator(world, device);
//   nccl->allreduce_sum(gradients);                  // a float32 tensor on cuda:<device>
//
// Semantics, beyond Communicator's:
// - Stream order. allreduce_sum, broadcast and allgather on device memory are enqueued on the
//   compute stream of the device (src/cuda/context.h), after the kernels that produced the data
//   and before the ones that consume it; they return before the GPU has run them. Host code that
//   reads the result goes through device_copy, which synchronises that stream.
// - iallreduce_sum on device memory (gradient buckets) runs on a communication stream of its own
//   that first waits for the compute stream (an event), so it overlaps the kernels enqueued after
//   it. Request::test() is true once it has completed on the GPU (never blocks). Request::wait()
//   does NOT block the host: it makes the compute stream wait for the allreduce, so every kernel
//   enqueued after wait() (the division by P, the optimizer step) sees the sum, and any host read
//   (device_copy) waits for it too.
// - Host memory (allgather_strings, model signature checks, a CPU tensor) is staged through a
//   device buffer that the communicator keeps and reuses: such calls block the host until done.
//   iallreduce_sum of host memory completes before it returns.
// - Buffers on another GPU than the communicator's are an error that names both devices.
// - split(color, key) is ncclCommSplit (the MPI bootstrap is split the same way, for local ranks);
//   a negative color gives nullptr.
// - One thread calls a communicator's collectives (as with MPI_THREAD_FUNNELED).
//
// Failure behaviour (docs/DESIGN.md §6): the communicator is non-blocking (NCCL's
// blocking = 0), so that every call can be abandoned. A watchdog thread watches every collective
// from the moment it is issued; one that has not completed after SYNCBN_COMM_TIMEOUT seconds
// (default 300; 0 = never), or an asynchronous NCCL error (ncclCommGetAsyncError, polled), aborts
// the NCCL communicator (ncclCommAbort) and ends the job through abort_job with a message naming
// the collective: "rank 3: NCCL allreduce of 1052 float32 elements on communicator of 4 ranks did
// not complete within 300 s; ...". Creating or splitting a communicator, and closing it, are
// bounded by the same timeout. An error of a call is thrown by that call (and ends the job through
// run_and_abort_on_error); the watchdog reports only what no call has seen. Destroying a
// communicator while an exception unwinds aborts it (ncclCommAbort) instead of waiting for the
// other ranks, which may never come.
//
// Several ranks on one GPU: NCCL 2.5 to 2.29 refuses it ("Duplicate GPU detected",
// ncclInvalidUsage; 2.30 and later allow it with NCCL_MULTI_RANK_GPU_ENABLE=1), so the factory
// checks first and says what to do. For tests only, SYNCBN_NCCL_HOSTID_PER_RANK=1 gives every
// process its own NCCL_HOSTID (set before NCCL reads it), so NCCL takes the ranks for separate
// hosts and connects them through its network transport (sockets, or InfiniBand where present):
// meant to be correct, and slow.
#include <memory>
#include <string>

#include "syncbn/distributed/communicator.h"

namespace syncbn::dist {

// True when this build has the NCCL backend.
bool nccl_available();

// The version of the NCCL library loaded at run time ("2.28.9"), or "" without NCCL.
std::string nccl_version();

// A communicator over the ranks of `bootstrap` (the same ranks, in the same order) on GPU
// `device` of this process, which it makes the current device. Collective over `bootstrap`:
// rank 0 creates NCCL's unique id and broadcasts it (host memory) over `bootstrap`, which the
// communicator keeps for rank(), local_rank() and split(). Throws syncbn::Error on a bad device,
// ranks sharing a GPU (see above), or an NCCL failure, and in builds without NCCL.
std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> bootstrap,
                                                     int device);

}  // namespace syncbn::dist
