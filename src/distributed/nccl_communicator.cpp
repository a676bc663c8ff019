// The NCCL backend of Communicator (semantics in include/syncbn/distributed/nccl_communicator.h).
//
// Streams. Blocking collectives run on the compute stream of the GPU (cuda::stream()), in program
// order with the kernels around them: SyncBatchNorm's small allreduce needs no event at all.
// Non-blocking allreduces (gradient buckets) run on a communication stream of higher priority:
//
//   compute:  ... backward kernels --record(order)--> more backward ... --wait(done)--> scale_
//   comm:                        \--wait(order)--> ncclAllReduce --record(done)--/
//
// Request::wait() is that last cudaStreamWaitEvent: the host does not block. NCCL runs the
// operations of one communicator in the order they were issued whatever the stream, so the
// blocking and non-blocking collectives of a communicator cannot overtake each other.
//
// Failure. The NCCL communicator is non-blocking (config.blocking = 0): a call may return before
// NCCL has done its part (connecting to peers, splitting) and report ncclInProgress until then;
// wait_for_nccl polls the communicator's state, so no call can hang in NCCL. Every collective is
// handed to a CommWatchdog (src/distributed/comm_watchdog.h) from the moment it is issued until the
// event recorded after it completes; on a timeout or an asynchronous NCCL error the watchdog's
// thread aborts the NCCL communicator (which makes this rank's NCCL kernels return) and ends the
// job with abort_job. The communicator's mutex makes that abort safe against the main thread:
// every NCCL call on the communicator holds it, and no call holds it while waiting.
//
// Files: this one (the communicator and its factory), nccl_state (the state shared with requests
// and watchdog, the event pool, wait_for_nccl), nccl_request (event ordering), nccl_watchdog
// (health check and abort), nccl_environment (version, NCCL_HOSTID, one rank per GPU).
#include "syncbn/distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "cuda/check.h"
#include "cuda/context.h"
#include "distributed/comm_watchdog.h"
#include "distributed/nccl_check.h"
#include "distributed/nccl_environment.h"
#include "distributed/nccl_request.h"
#include "distributed/nccl_state.h"
#include "distributed/nccl_watchdog.h"
#include "syncbn/error.h"
#include "syncbn/tensor.h"

namespace syncbn::dist {

namespace {

using detail::apply_hostid_per_rank;
using detail::check_one_rank_per_gpu;
using detail::Clock;
using detail::deadline_after;
using detail::DeviceGuard;
using detail::NcclRequest;
using detail::NcclState;
using detail::PendingCollective;
using detail::wait_for_job_end;
using detail::wait_for_nccl;

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUint8:
      return ncclUint8;
  }
  SYNCBN_FAIL("unknown DataType ", static_cast<int>(type));
}

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm`, initialised on `device` over the ranks of `bootstrap`. On a throw,
  // aborts it.
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, int device, ncclComm_t comm)
      : bootstrap_(std::move(bootstrap)),
        state_(std::make_shared<NcclState>()),
        uncaught_at_start_(std::uncaught_exceptions()) {
    state_->device = device;
    state_->size = bootstrap_->size();
    state_->comm = comm;
    try {
      DeviceGuard guard(device);
      int nccl_rank = -1;
      int nccl_size = -1;
      SYNCBN_NCCL_CHECK(ncclCommUserRank(comm, &nccl_rank));
      SYNCBN_NCCL_CHECK(ncclCommCount(comm, &nccl_size));
      SYNCBN_CHECK(nccl_rank == bootstrap_->rank() && nccl_size == bootstrap_->size(),
                   "NCCL communicator is rank ", nccl_rank, " of ", nccl_size,
                   " but its bootstrap communicator is rank ", bootstrap_->rank(), " of ",
                   bootstrap_->size());
      // The highest priority: the GPU schedules the allreduce's blocks ahead of backward's.
      int least = 0;
      int greatest = 0;
      SYNCBN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      SYNCBN_CUDA_CHECK(
          cudaStreamCreateWithPriority(&comm_stream_, cudaStreamNonBlocking, greatest));
      SYNCBN_CUDA_CHECK(cudaEventCreateWithFlags(&order_event_, cudaEventDisableTiming));
      watchdog_ = detail::make_nccl_watchdog(state_);
    } catch (...) {
      release_cuda_objects();
      ncclCommAbort(comm);
      throw;
    }
  }

  ~NcclCommunicator() override {
    watchdog_.reset();  // nothing polls the NCCL communicator from here on
    close_nccl_communicator();
    release_cuda_objects();
  }

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  int local_size() const override { return bootstrap_->local_size(); }

 protected:
  void do_allreduce_sum(void* data, int64_t count, DataType type, Device device) override {
    if (count == 0) return;
    check_device("allreduce_sum", device);
    DeviceGuard guard(state_->device);
    if (device.is_cpu()) {
      const std::size_t bytes = count * element_size(type);
      void* staged = staging(bytes);
      device_copy(staged, gpu(), data, Device::cpu(), bytes);
      allreduce_on_compute_stream(staged, count, type);
      device_copy(data, Device::cpu(), staged, gpu(), bytes);  // waits for the allreduce
      return;
    }
    allreduce_on_compute_stream(data, count, type);
  }

  std::unique_ptr<Request> do_iallreduce_sum(void* data, int64_t count, DataType type,
                                             Device device) override {
    if (count == 0 || device.is_cpu()) {
      // Host memory cannot be read by the GPU while the caller goes on: staged, and complete.
      do_allreduce_sum(data, count, type, device);
      return std::make_unique<NcclRequest>(state_->device, nullptr);
    }
    check_device("iallreduce_sum", device);
    DeviceGuard guard(state_->device);
    // The communication stream starts after everything enqueued so far on the compute stream,
    // which produced the bucket's gradients.
    SYNCBN_CUDA_CHECK(cudaEventRecord(order_event_, cuda::stream()));
    SYNCBN_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, order_event_, 0));
    const cudaStream_t stream = comm_stream_;
    std::shared_ptr<CUevent_st> done =
        enqueue("allreduce", count, type, stream, "ncclAllReduce", [&](ncclComm_t comm) {
          return ncclAllReduce(data, data, static_cast<std::size_t>(count), nccl_type(type),
                               ncclSum, comm, stream);
        });
    return std::make_unique<NcclRequest>(state_->device, std::move(done));
  }

  void do_broadcast(void* data, int64_t count, DataType type, int root, Device device) override {
    if (count == 0) return;
    check_device("broadcast", device);
    DeviceGuard guard(state_->device);
    const std::size_t bytes = count * element_size(type);
    void* buffer = data;
    if (device.is_cpu()) {
      buffer = staging(bytes);
      if (rank() == root) device_copy(buffer, gpu(), data, Device::cpu(), bytes);
    }
    const cudaStream_t stream = cuda::stream();
    enqueue("broadcast", count, type, stream, "ncclBroadcast", [&](ncclComm_t comm) {
      return ncclBroadcast(buffer, buffer, static_cast<std::size_t>(count), nccl_type(type), root,
                           comm, stream);
    });
    if (device.is_cpu() && rank() != root) device_copy(data, Device::cpu(), buffer, gpu(), bytes);
    if (device.is_cpu() && rank() == root) cuda::synchronize();  // the staging buffer is reused
  }

  void do_allgather(const void* send, void* recv, int64_t count_per_rank, DataType type,
                    Device device) override {
    if (count_per_rank == 0) return;
    check_device("allgather", device);
    DeviceGuard guard(state_->device);
    const std::size_t send_bytes = count_per_rank * element_size(type);
    const std::size_t recv_bytes = send_bytes * static_cast<std::size_t>(size());
    const void* send_buffer = send;
    void* recv_buffer = recv;
    if (device.is_cpu()) {
      // One staging block: the send part, then the receive part at an aligned offset.
      constexpr std::size_t kAlignment = 256;
      const std::size_t recv_offset = (send_bytes + kAlignment - 1) / kAlignment * kAlignment;
      auto* staged = static_cast<std::byte*>(staging(recv_offset + recv_bytes));
      device_copy(staged, gpu(), send, Device::cpu(), send_bytes);
      send_buffer = staged;
      recv_buffer = staged + recv_offset;
    }
    const cudaStream_t stream = cuda::stream();
    enqueue("allgather", count_per_rank, type, stream, "ncclAllGather", [&](ncclComm_t comm) {
      return ncclAllGather(send_buffer, recv_buffer, static_cast<std::size_t>(count_per_rank),
                           nccl_type(type), comm, stream);
    });
    if (device.is_cpu()) device_copy(recv, Device::cpu(), recv_buffer, gpu(), recv_bytes);
  }

  // An allreduce of one int, then the host waits for it: every rank has reached the barrier
  // when it returns (and the GPU work queued before it is done).
  void do_barrier() override {
    DeviceGuard guard(state_->device);
    allreduce_on_compute_stream(staging(sizeof(int32_t)), 1, DataType::kInt32);
    cuda::synchronize();
  }

  std::shared_ptr<Communicator> do_split(int color, int key) override {
    // The bootstrap splits the same way (same colors, same keys, ties by rank in both), so the
    // child's bootstrap has the child's ranks in the same order: local ranks, further splits.
    std::shared_ptr<Communicator> child_bootstrap = bootstrap_->split(color, key);
    DeviceGuard guard(state_->device);
    // NCCL writes the child from a thread of its own when the split has finished (the parent's
    // state says when): the slot is on the heap, and left to leak should the wait fail, so that
    // a late write cannot land in a dead stack frame.
    auto slot = std::make_unique<ncclComm_t>(nullptr);
    {
      std::unique_lock<std::mutex> lock(state_->mutex);
      if (state_->ending) wait_for_job_end(lock, *state_);
      try {
        // config nullptr: the child inherits the parent's configuration (non-blocking).
        const ncclResult_t status = ncclCommSplit(
            state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, slot.get(), nullptr);
        wait_for_nccl(state_->comm, status, "ncclCommSplit", deadline_after(comm_timeout_seconds()),
                      &lock, state_.get());
      } catch (...) {
        state_->error_reported = true;  // the lock is held whenever wait_for_nccl throws
        (void)slot.release();
        throw;
      }
    }
    ncclComm_t child = std::atomic_ref<ncclComm_t>(*slot).load(std::memory_order_acquire);
    if (color < 0) {
      SYNCBN_CHECK(child == nullptr && child_bootstrap == nullptr,
                   "split with a negative color gave a communicator");
      return nullptr;
    }
    SYNCBN_CHECK(child != nullptr && child_bootstrap != nullptr, "ncclCommSplit (color ", color,
                 ", key ", key, ") gave no communicator");
    try {
      wait_for_nccl(child, ncclSuccess, "ncclCommSplit", deadline_after(comm_timeout_seconds()));
    } catch (...) {
      ncclCommAbort(child);
      throw;
    }
    return std::make_shared<NcclCommunicator>(std::move(child_bootstrap), state_->device, child);
  }

 private:
  Device gpu() const { return Device::cuda(state_->device); }

  void check_device(const char* op, Device device) const {
    SYNCBN_CHECK(device.is_cpu() || device.index == state_->device, op,
                 ": the NCCL communicator is on cuda:", state_->device, " but the buffer is on ",
                 device.str(), " (each rank's buffers must be on its communicator's GPU)");
  }

  // A device buffer for host data, kept and reused; used only by calls that finish (synchronise)
  // before they return. The caller has made the communicator's device current.
  void* staging(std::size_t bytes) {
    if (!staging_ || staging_->bytes < bytes) {
      staging_.reset();
      staging_ = std::make_unique<Storage>(gpu(), std::max<std::size_t>(bytes, 4096));
    }
    return staging_->ptr;
  }

  void allreduce_on_compute_stream(void* data, int64_t count, DataType type) {
    const cudaStream_t stream = cuda::stream();
    enqueue("allreduce", count, type, stream, "ncclAllReduce", [&](ncclComm_t comm) {
      return ncclAllReduce(data, data, static_cast<std::size_t>(count), nccl_type(type), ncclSum,
                           comm, stream);
    });
  }

  // Issues one NCCL collective on `stream` (call(comm) makes the NCCL call), waits until NCCL has
  // enqueued it, and records the event `done` after it. The watchdog watches the collective from
  // before the call, since NCCL may first have to connect to the other ranks.
  template <class Call>
  std::shared_ptr<CUevent_st> enqueue(const char* op, int64_t count, DataType type,
                                      cudaStream_t stream, const char* call_name, Call call) {
    auto pending = std::make_shared<PendingCollective>();
    pending->done = state_->events->acquire();
    watchdog_->watch(op, count, type,
                     [pending](std::string& error) { return pending->poll(error); });
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->ending) wait_for_job_end(lock, *state_);
    try {
      const ncclResult_t status = call(state_->comm);
      // The watchdog bounds this wait: on a timeout it ends the job.
      wait_for_nccl(state_->comm, status, call_name, Clock::time_point::max(), &lock, state_.get());
      const cudaError_t recorded = cudaEventRecord(pending->done.get(), stream);
      if (recorded != cudaSuccess) {
        SYNCBN_FAIL(detail::cuda_error_on_collective(recorded, "cudaEventRecord",
                                                     std::string("the NCCL ") + op));
      }
    } catch (...) {
      // This thread reports the error (the lock is held whenever the calls above throw).
      state_->error_reported = true;
      pending->phase.store(PendingCollective::kAbandoned, std::memory_order_release);
      throw;
    }
    pending->phase.store(PendingCollective::kEnqueued, std::memory_order_release);
    return pending->done;
  }

  // Normal end: ncclCommFinalize (which waits for the collectives in flight and for the other
  // local ranks), then ncclCommDestroy. While an exception unwinds (this rank failed; the others
  // may never come), or when finalising fails or outlasts the timeout: ncclCommAbort, local.
  void close_nccl_communicator() noexcept {
    std::lock_guard<std::mutex> lock(state_->mutex);
    ncclComm_t comm = state_->comm;
    if (comm == nullptr || state_->ending || state_->comm_aborted) return;
    state_->comm = nullptr;
    int previous = state_->device;
    cudaGetDevice(&previous);
    cudaSetDevice(state_->device);
    if (std::uncaught_exceptions() > uncaught_at_start_) {
      ncclCommAbort(comm);
    } else {
      try {
        wait_for_nccl(comm, ncclCommFinalize(comm), "ncclCommFinalize",
                      deadline_after(comm_timeout_seconds()));
        ncclCommDestroy(comm);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "warning: closing the NCCL communicator: %s; aborting it\n",
                     error.what());
        ncclCommAbort(comm);
      }
    }
    cudaSetDevice(previous);
  }

  void release_cuda_objects() noexcept {
    // Not checked: destructors cannot throw, and at exit the CUDA runtime may be gone already.
    if (order_event_ != nullptr) cudaEventDestroy(order_event_);
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
    order_event_ = nullptr;
    comm_stream_ = nullptr;
  }

  std::shared_ptr<Communicator> bootstrap_;
  std::shared_ptr<NcclState> state_;
  int uncaught_at_start_;
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t order_event_ = nullptr;
  std::unique_ptr<Storage> staging_;
  std::unique_ptr<CommWatchdog> watchdog_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> bootstrap,
                                                     int device) {
  SYNCBN_CHECK(bootstrap != nullptr,
               "make_nccl_communicator needs a bootstrap communicator (MPI) to share NCCL's id");
  const int devices = cuda_device_count();
  SYNCBN_CHECK(devices > 0, "the NCCL backend needs a CUDA device, and this process sees none");
  SYNCBN_CHECK(device >= 0 && device < devices, "make_nccl_communicator: device ", device,
               " does not exist (this process sees ", devices, " CUDA devices)");
  const double timeout = comm_timeout_seconds();  // a bad SYNCBN_COMM_TIMEOUT fails here, early
  apply_hostid_per_rank(*bootstrap);              // before any NCCL call
  cuda::set_device(device);
  check_one_rank_per_gpu(*bootstrap, device);

  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap->rank() == 0) SYNCBN_NCCL_CHECK(ncclGetUniqueId(&id));
  bootstrap->broadcast(&id, static_cast<int64_t>(sizeof(id)), DataType::kUint8, 0);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns; the state says when NCCL is done
  ncclComm_t comm = nullptr;
  const ncclResult_t status =
      ncclCommInitRankConfig(&comm, bootstrap->size(), id, bootstrap->rank(), &config);
  if (comm == nullptr)
    detail::throw_nccl_error(status, "ncclCommInitRankConfig", __FILE__, __LINE__);
  try {
    wait_for_nccl(comm, status, "ncclCommInitRankConfig", deadline_after(timeout));
  } catch (...) {
    ncclCommAbort(comm);
    throw;
  }
  return std::make_shared<NcclCommunicator>(std::move(bootstrap), device, comm);
}

}  // namespace syncbn::dist
