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
#include "syncbn/distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

// Only MPI's C API: the deprecated C++ bindings would need libmpi_cxx at link time.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "cuda/check.h"
#include "cuda/context.h"
#include "distributed/comm_watchdog.h"
#include "distributed/nccl_check.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/tensor.h"

namespace syncbn::dist {

namespace {

using Clock = std::chrono::steady_clock;

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

int nccl_version_code() {
  int version = 0;
  SYNCBN_NCCL_CHECK(ncclGetVersion(&version));
  return version;
}

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

Clock::time_point deadline_after(double seconds) {
  if (seconds <= 0) return Clock::time_point::max();
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// CUDA events (timing disabled, the cheapest kind) reused across collectives, so that the hot
// path creates none. An event returns to the pool when its last user lets go of it: the request
// that waits on it, and the watchdog that watches it.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  ~EventPool() {
    for (cudaEvent_t event : free_) cudaEventDestroy(event);  // not checked: may run at exit
  }

  // The caller has made the pool's device current.
  std::shared_ptr<CUevent_st> acquire() {
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

 private:
  void release(cudaEvent_t event) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(event);
    } catch (...) {
      cudaEventDestroy(event);
    }
  }

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
[[noreturn]] void wait_for_job_end(std::unique_lock<std::mutex>& lock, const NcclState& state) {
  const std::string reason = state.ending_reason;
  lock.unlock();
  std::this_thread::sleep_for(std::chrono::seconds(60));
  SYNCBN_FAIL("the NCCL communicator on cuda:", state.device,
              " was aborted by its watchdog, and the job did not end: ", reason);
}

// Waits until the non-blocking `comm` has finished the call that returned `status`. NCCL may
// return ncclSuccess or ncclInProgress and go on in a thread of its own (connecting to peers,
// initialising, splitting); the communicator's state (ncclCommGetAsyncError) says ncclInProgress
// until then, and the result after. Throws syncbn::Error naming `call` on an error, or once
// `deadline` has passed. With `lock` (on state->mutex), the mutex is released while waiting, and
// the wait ends in wait_for_job_end when the watchdog ends the job meanwhile.
void wait_for_nccl(ncclComm_t comm, ncclResult_t status, const char* call,
                   Clock::time_point deadline, std::unique_lock<std::mutex>* lock = nullptr,
                   const NcclState* state = nullptr) {
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

// One collective as the watchdog sees it: issued (NCCL may still be connecting), enqueued (the
// event `done` is recorded after it), or abandoned (the call threw, and the error travels with
// the exception).
struct PendingCollective {
  enum Phase : int { kIssued, kEnqueued, kAbandoned };
  std::atomic<int> phase{kIssued};
  std::shared_ptr<CUevent_st> done;

  CollectiveState poll(std::string& error) const {
    const int now = phase.load(std::memory_order_acquire);
    if (now == kIssued) return CollectiveState::kRunning;
    if (now == kAbandoned) return CollectiveState::kDone;
    const cudaError_t status = cudaEventQuery(done.get());
    if (status == cudaSuccess) return CollectiveState::kDone;
    if (status == cudaErrorNotReady) {
      cudaGetLastError();  // "not ready" is no error; keep it out of this thread's last error
      return CollectiveState::kRunning;
    }
    error = std::string("CUDA error ") + cudaGetErrorName(status) + " (" +
            cudaGetErrorString(status) + ")";
    return CollectiveState::kFailed;
  }
};

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

// A non-blocking allreduce in flight on the communication stream.
class NcclRequest final : public Request {
 public:
  // done == nullptr: already complete (an empty or host-memory allreduce).
  NcclRequest(int device, std::shared_ptr<CUevent_st> done)
      : device_(device), done_(std::move(done)) {}

  ~NcclRequest() override {
    // The contract: a request destroyed before completion waits for it. Here that orders the
    // compute stream, so memory freed after this is reused only after the allreduce.
    try {
      wait();
    } catch (...) {
    }
  }

  void wait() override {
    if (waited_ || done_ == nullptr) return;
    DeviceGuard guard(device_);
    SYNCBN_CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), done_.get(), 0));
    waited_ = true;
  }

  bool test() override {
    if (done_ == nullptr) return true;
    const cudaError_t status = cudaEventQuery(done_.get());
    if (status == cudaSuccess) return true;
    if (status == cudaErrorNotReady) {
      cudaGetLastError();  // "not ready" must not surface at the next launch check
      return false;
    }
    SYNCBN_CUDA_CHECK(status);
    return false;
  }

 private:
  int device_;
  std::shared_ptr<CUevent_st> done_;
  bool waited_ = false;
};

// SYNCBN_NCCL_HOSTID_PER_RANK=1 (tests on one GPU): every process gets its own NCCL_HOSTID,
// "<host>-syncbn-rank<world rank>", so that NCCL takes the ranks for separate hosts. NCCL hashes
// NCCL_HOSTID once per process, at its first use, hence before any NCCL call; once per process
// here too.
void apply_hostid_per_rank(const Communicator& bootstrap) {
  static bool applied = false;
  if (applied) return;
  const char* flag = std::getenv("SYNCBN_NCCL_HOSTID_PER_RANK");
  if (flag == nullptr || *flag == '\0' || std::strcmp(flag, "0") == 0) return;
  SYNCBN_CHECK(std::strcmp(flag, "1") == 0, "SYNCBN_NCCL_HOSTID_PER_RANK must be 0 or 1, got '",
               flag, "'");
  // The world rank: unique in the job, whichever communicator is the bootstrap.
  int world_rank = bootstrap.rank();
  int mpi_running = 0;
  SYNCBN_MPI_CHECK(MPI_Initialized(&mpi_running));
  if (mpi_running) SYNCBN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  std::string base;
  if (const char* hostid = std::getenv("NCCL_HOSTID")) {
    base = hostid;
  } else {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    base = host;
  }
  const std::string hostid = base + "-syncbn-rank" + std::to_string(world_rank);
  SYNCBN_CHECK(setenv("NCCL_HOSTID", hostid.c_str(), 1) == 0, "cannot set NCCL_HOSTID");
  applied = true;
}

// How NCCL tells hosts apart: NCCL_HOSTID when set, else the host name and the kernel's boot id
// (so that containers with their own names count as hosts of their own, as in NCCL).
std::string nccl_host_identity() {
  if (const char* hostid = std::getenv("NCCL_HOSTID")) return hostid;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return std::string(host) + boot_id;
}

// NCCL 2.5 to 2.29 refuses two ranks of a communicator on one GPU of one host ("Duplicate GPU
// detected", NVIDIA/nccl#418); 2.30 allows it with NCCL_MULTI_RANK_GPU_ENABLE=1 (and MPS).
// Checked before NCCL, collectively, so that every rank fails alike with a message that says
// what to do.
void check_one_rank_per_gpu(Communicator& bootstrap, int device) {
  const char* multi_rank = std::getenv("NCCL_MULTI_RANK_GPU_ENABLE");
  const bool allowed =
      nccl_version_code() >= 23000 && multi_rank != nullptr && std::strcmp(multi_rank, "1") == 0;
  char bus_id[64] = {};
  SYNCBN_CUDA_CHECK(cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), device));
  const std::vector<std::string> gpus =
      bootstrap.allgather_strings(nccl_host_identity() + "|" + bus_id);
  if (allowed) return;
  for (std::size_t second = 1; second < gpus.size(); ++second) {
    for (std::size_t first = 0; first < second; ++first) {
      if (gpus[first] != gpus[second]) continue;
      SYNCBN_FAIL("ranks ", first, " and ", second, " of the communicator would share GPU ",
                  gpus[first].substr(gpus[first].rfind('|') + 1), " of one host, and NCCL ",
                  nccl_version(),
                  " allows one rank per GPU. Start at most as many ranks per host as it has GPUs "
                  "(each rank takes local rank % GPU count), or use the MPI backend; for tests "
                  "only, SYNCBN_NCCL_HOSTID_PER_RANK=1 makes NCCL treat every rank as a host of "
                  "its own (slow: its network transport)");
    }
  }
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
      watchdog_ = make_watchdog();
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
      SYNCBN_CUDA_CHECK(cudaEventRecord(pending->done.get(), stream));
    } catch (...) {
      // This thread reports the error (the lock is held whenever the calls above throw).
      state_->error_reported = true;
      pending->phase.store(PendingCollective::kAbandoned, std::memory_order_release);
      throw;
    }
    pending->phase.store(PendingCollective::kEnqueued, std::memory_order_release);
    return pending->done;
  }

  std::unique_ptr<CommWatchdog> make_watchdog() {
    CommWatchdog::Options options;
    options.backend = "NCCL";
    options.comm_size = state_->size;
    options.timeout_seconds = comm_timeout_seconds();
    const int device = state_->device;
    options.thread_setup = [device] { cuda::set_device(device); };
    const std::shared_ptr<NcclState> state = state_;
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

bool nccl_available() { return true; }

std::string nccl_version() {
  const int code = nccl_version_code();
  // NCCL_VERSION(X, Y, Z) is X*10000 + Y*100 + Z since 2.9 (X*1000 + Y*100 + Z before).
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? code % 10000 / 100 : code % 1000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

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
