#include "syncbn/distributed/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "distributed/comm_watchdog.h"
#include "syncbn/distributed/cuda_aware.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"

namespace syncbn::dist {

namespace detail {

void check_mpi(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  std::string reason;
  if (MPI_Error_string(code, text, &length) == MPI_SUCCESS) {
    reason.assign(text, static_cast<std::size_t>(length));
  } else {
    reason = "MPI error code " + std::to_string(code);
  }
  // The function's name is enough to find the call; the arguments are in the source.
  const std::string function(call, std::strcspn(call, "("));
  ::syncbn::detail::throw_error(function + " failed: " + reason, file, line);
}

}  // namespace detail

namespace {

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
    case DataType::kInt32:
      return MPI_INT32_T;
    case DataType::kInt64:
      return MPI_INT64_T;
    case DataType::kUint8:
      return MPI_UINT8_T;
  }
  SYNCBN_FAIL("unknown DataType ", static_cast<int>(type));
}

using HostBuffer = std::vector<std::byte>;

// Host buffers that stage device memory for MPI, kept for reuse so that a training step does
// not allocate. Shared with requests in flight, which may outlive their communicator.
class StagingPool {
 public:
  HostBuffer acquire(std::size_t bytes) {
    HostBuffer buffer;
    if (!free_.empty()) {
      buffer = std::move(free_.back());
      free_.pop_back();
    }
    if (buffer.size() < bytes) buffer.resize(bytes);
    return buffer;
  }
  void release(HostBuffer buffer) { free_.push_back(std::move(buffer)); }

 private:
  std::vector<HostBuffer> free_;
};

// Calls f(offset, n) for consecutive pieces [offset, offset + n) of [0, count) with n at most
// max_elements, which fits MPI's int counts.
template <class F>
void for_each_piece(int64_t count, int64_t max_elements, F f) {
  for (int64_t offset = 0; offset < count; offset += max_elements) {
    f(offset, static_cast<int>(std::min(max_elements, count - offset)));
  }
}

std::byte* at(void* base, int64_t elements, std::size_t element_bytes) {
  return static_cast<std::byte*>(base) + elements * static_cast<int64_t>(element_bytes);
}
const std::byte* at(const void* base, int64_t elements, std::size_t element_bytes) {
  return static_cast<const std::byte*>(base) + elements * static_cast<int64_t>(element_bytes);
}

// One collective under the communicator's watchdog (none when SYNCBN_COMM_TIMEOUT is 0), from
// construction until the blocking MPI call has returned, or thrown: an error is reported by the
// exception, not by a timeout.
class Watched {
 public:
  Watched(CommWatchdog* watchdog, const char* op, int64_t count, DataType type)
      : watchdog_(watchdog) {
    if (watchdog_) ticket_ = watchdog_->watch_until_done(op, count, type);
  }
  ~Watched() {
    if (watchdog_) watchdog_->done(ticket_);
  }
  Watched(const Watched&) = delete;
  Watched& operator=(const Watched&) = delete;

 private:
  CommWatchdog* watchdog_;
  CommWatchdog::Ticket ticket_;
};

// A non-blocking allreduce: one MPI request per piece, and the staging buffer (empty for host
// memory) whose result is copied back to the device on completion. Watched from construction
// until wait() or test() sees it complete; the request shares the watchdog, since it may outlive
// its communicator.
class MpiRequest final : public Request {
 public:
  MpiRequest(void* data, int64_t count, DataType type, Device device, std::size_t bytes,
             HostBuffer staging, std::shared_ptr<StagingPool> pool,
             std::shared_ptr<CommWatchdog> watchdog)
      : data_(data),
        device_(device),
        bytes_(bytes),
        staging_(std::move(staging)),
        pool_(std::move(pool)),
        watchdog_(std::move(watchdog)) {
    if (watchdog_) ticket_ = watchdog_->watch_until_done("iallreduce", count, type);
  }

  ~MpiRequest() override {
    if (done_) return;
    // MPI must not write into memory that is about to be freed: wait. A destructor cannot
    // throw, and after MPI_Finalize there is nothing left to wait for.
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) {
      stop_watching();
      return;
    }
    try {
      wait();
    } catch (...) {
    }
  }

  // Where MPI reads and writes: the user's buffer, or the staging copy of device memory.
  void* host_buffer() { return device_.is_cpu() ? data_ : staging_.data(); }
  void add(MPI_Request piece) { requests_.push_back(piece); }

  void wait() override {
    if (done_) return;
    try {
      SYNCBN_MPI_CHECK(
          MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
    } catch (...) {
      stop_watching();  // the exception reports the error
      throw;
    }
    finish();
  }

  bool test() override {
    if (done_) return true;
    int completed = 0;
    try {
      SYNCBN_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &completed,
                                   MPI_STATUSES_IGNORE));
    } catch (...) {
      stop_watching();
      throw;
    }
    if (completed) finish();
    return done_;
  }

 private:
  void stop_watching() {
    if (watchdog_) watchdog_->done(ticket_);
  }

  void finish() {
    done_ = true;
    stop_watching();
    if (device_.is_cpu()) return;
    device_copy(data_, device_, staging_.data(), Device::cpu(), bytes_);
    pool_->release(std::move(staging_));
  }

  std::vector<MPI_Request> requests_;
  void* data_;
  Device device_;
  std::size_t bytes_;
  HostBuffer staging_;
  std::shared_ptr<StagingPool> pool_;
  std::shared_ptr<CommWatchdog> watchdog_;
  CommWatchdog::Ticket ticket_;
  bool done_ = false;
};

// The watchdog of one communicator, or null when SYNCBN_COMM_TIMEOUT is 0 (nothing else to
// watch: MPI reports its errors through return codes). Its thread makes no MPI call (the
// Runtime asks for MPI_THREAD_FUNNELED): on a timeout it ends the job through abort_job, since a
// rank blocked in an MPI collective cannot be unblocked otherwise.
std::shared_ptr<CommWatchdog> make_mpi_watchdog(int comm_size) {
  CommWatchdog::Options options;
  options.backend = "MPI";
  options.comm_size = comm_size;
  options.timeout_seconds = comm_timeout_seconds();
  if (options.timeout_seconds == 0) return nullptr;
  return std::make_shared<CommWatchdog>(std::move(options), CommWatchdog::HealthCheck(),
                                        [](const std::string& message) { abort_job(message); });
}

}  // namespace

struct MpiCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;  // false for MPI_COMM_WORLD, which MPI owns
  // MPI reads and writes GPU memory itself: device buffers go to MPI without host staging.
  const bool cuda_aware = mpi_cuda_aware();
  std::shared_ptr<StagingPool> staging = std::make_shared<StagingPool>();
  // Null when SYNCBN_COMM_TIMEOUT is 0. Shared with the requests in flight.
  std::shared_ptr<CommWatchdog> watchdog;

  Impl(MPI_Comm comm_, bool owned_) : comm(comm_), owned(owned_) {}
  ~Impl() {
    // Not checked: a destructor cannot throw. After MPI_Finalize the handle is already gone.
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void allreduce_host(void* data, int64_t count, DataType type, int64_t max_elements) {
    const std::size_t element_bytes = element_size(type);
    for_each_piece(count, max_elements, [&](int64_t offset, int n) {
      SYNCBN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, at(data, offset, element_bytes), n,
                                     mpi_type(type), MPI_SUM, comm));
    });
  }

  void broadcast_host(void* data, int64_t count, DataType type, int root, int64_t max_elements) {
    const std::size_t element_bytes = element_size(type);
    for_each_piece(count, max_elements, [&](int64_t offset, int n) {
      SYNCBN_MPI_CHECK(MPI_Bcast(at(data, offset, element_bytes), n, mpi_type(type), root, comm));
    });
  }

  // recv[r * count + i] = send of rank r [i]. Pieces longer than MPI's int counts are gathered
  // through a scratch buffer, then moved to each rank's block.
  void allgather_host(const void* send, void* recv, int64_t count, DataType type, int size,
                      int64_t max_elements) {
    const std::size_t element_bytes = element_size(type);
    if (count <= max_elements) {
      SYNCBN_MPI_CHECK(MPI_Allgather(send, static_cast<int>(count), mpi_type(type), recv,
                                     static_cast<int>(count), mpi_type(type), comm));
      return;
    }
    HostBuffer scratch = staging->acquire(element_bytes * max_elements * size);
    for_each_piece(count, max_elements, [&](int64_t offset, int n) {
      SYNCBN_MPI_CHECK(MPI_Allgather(at(send, offset, element_bytes), n, mpi_type(type),
                                     scratch.data(), n, mpi_type(type), comm));
      for (int r = 0; r < size; ++r) {
        std::memcpy(at(recv, r * count + offset, element_bytes),
                    at(scratch.data(), int64_t{r} * n, element_bytes), n * element_bytes);
      }
    });
    staging->release(std::move(scratch));
  }
};

MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), max_elements_per_call_(INT_MAX) {
  // Errors come back as codes (and so as syncbn::Error) instead of aborting inside MPI.
  SYNCBN_MPI_CHECK(MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN));
  SYNCBN_MPI_CHECK(MPI_Comm_rank(impl_->comm, &rank_));
  SYNCBN_MPI_CHECK(MPI_Comm_size(impl_->comm, &size_));
  // The ranks of this communicator that can share memory are the ones on this host.
  MPI_Comm host = MPI_COMM_NULL;
  SYNCBN_MPI_CHECK(
      MPI_Comm_split_type(impl_->comm, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &host));
  SYNCBN_MPI_CHECK(MPI_Comm_rank(host, &local_rank_));
  SYNCBN_MPI_CHECK(MPI_Comm_size(host, &local_size_));
  SYNCBN_MPI_CHECK(MPI_Comm_free(&host));
  impl_->watchdog = make_mpi_watchdog(size_);
}

MpiCommunicator::~MpiCommunicator() = default;

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  int initialized = 0;
  int finalized = 0;
  SYNCBN_MPI_CHECK(MPI_Initialized(&initialized));
  SYNCBN_MPI_CHECK(MPI_Finalized(&finalized));
  SYNCBN_CHECK(initialized && !finalized,
               "MPI is not running: create a syncbn::dist::Runtime before using communicators");
  return std::shared_ptr<MpiCommunicator>(
      new MpiCommunicator(std::make_unique<Impl>(MPI_COMM_WORLD, false)));
}

void MpiCommunicator::set_max_elements_per_call(int64_t max_elements) {
  SYNCBN_CHECK(max_elements >= 1 && max_elements <= INT_MAX,
               "max elements per MPI call must be in [1, ", INT_MAX, "], got ", max_elements);
  max_elements_per_call_ = max_elements;
}

void MpiCommunicator::do_allreduce_sum(void* data, int64_t count, DataType type, Device device) {
  if (device.is_cpu() || impl_->cuda_aware) {
    wait_for_device_work(device);  // MPI knows nothing of the compute stream
    Watched watched(impl_->watchdog.get(), "allreduce", count, type);
    impl_->allreduce_host(data, count, type, max_elements_per_call_);
    return;
  }
  const std::size_t bytes = count * element_size(type);
  HostBuffer host = impl_->staging->acquire(bytes);
  device_copy(host.data(), Device::cpu(), data, device, bytes);
  {
    Watched watched(impl_->watchdog.get(), "allreduce", count, type);
    impl_->allreduce_host(host.data(), count, type, max_elements_per_call_);
  }
  device_copy(data, device, host.data(), Device::cpu(), bytes);
  impl_->staging->release(std::move(host));
}

std::unique_ptr<Request> MpiCommunicator::do_iallreduce_sum(void* data, int64_t count,
                                                            DataType type, Device device) {
  const std::size_t element_bytes = element_size(type);
  const std::size_t bytes = count * element_bytes;
  // Device memory is always staged through the host here, even with CUDA-aware MPI: Open MPI's
  // CUDA support covers point-to-point and the blocking collectives, not the non-blocking ones
  // (its FAQ, "Which MPI APIs do NOT work with CUDA-aware?"), which would reduce on the host
  // over device pointers.
  const bool direct = device.is_cpu();
  HostBuffer staging;
  if (!direct) {
    staging = impl_->staging->acquire(bytes);
    device_copy(staging.data(), Device::cpu(), data, device, bytes);
  }
  // The request owns the staging buffer before any piece starts, so that it outlives them. A
  // direct request is made as for host memory: nothing to copy back on completion.
  auto request =
      std::make_unique<MpiRequest>(data, count, type, direct ? Device::cpu() : device, bytes,
                                   std::move(staging), impl_->staging, impl_->watchdog);
  void* host = request->host_buffer();
  for_each_piece(count, max_elements_per_call_, [&](int64_t offset, int n) {
    MPI_Request piece = MPI_REQUEST_NULL;
    SYNCBN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, at(host, offset, element_bytes), n,
                                    mpi_type(type), MPI_SUM, impl_->comm, &piece));
    request->add(piece);
  });
  return request;
}

void MpiCommunicator::do_broadcast(void* data, int64_t count, DataType type, int root,
                                   Device device) {
  if (device.is_cpu() || impl_->cuda_aware) {
    wait_for_device_work(device);
    Watched watched(impl_->watchdog.get(), "broadcast", count, type);
    impl_->broadcast_host(data, count, type, root, max_elements_per_call_);
    return;
  }
  const std::size_t bytes = count * element_size(type);
  HostBuffer host = impl_->staging->acquire(bytes);
  if (rank_ == root) device_copy(host.data(), Device::cpu(), data, device, bytes);
  {
    Watched watched(impl_->watchdog.get(), "broadcast", count, type);
    impl_->broadcast_host(host.data(), count, type, root, max_elements_per_call_);
  }
  if (rank_ != root) device_copy(data, device, host.data(), Device::cpu(), bytes);
  impl_->staging->release(std::move(host));
}

void MpiCommunicator::do_allgather(const void* send, void* recv, int64_t count_per_rank,
                                   DataType type, Device device) {
  // Pieces longer than MPI's int counts go through a host scratch buffer (memcpy): staged.
  if (device.is_cpu() || (impl_->cuda_aware && count_per_rank <= max_elements_per_call_)) {
    wait_for_device_work(device);
    Watched watched(impl_->watchdog.get(), "allgather", count_per_rank, type);
    impl_->allgather_host(send, recv, count_per_rank, type, size_, max_elements_per_call_);
    return;
  }
  const std::size_t send_bytes = count_per_rank * element_size(type);
  const std::size_t recv_bytes = send_bytes * size_;
  HostBuffer host_send = impl_->staging->acquire(send_bytes);
  HostBuffer host_recv = impl_->staging->acquire(recv_bytes);
  device_copy(host_send.data(), Device::cpu(), send, device, send_bytes);
  {
    Watched watched(impl_->watchdog.get(), "allgather", count_per_rank, type);
    impl_->allgather_host(host_send.data(), host_recv.data(), count_per_rank, type, size_,
                          max_elements_per_call_);
  }
  device_copy(recv, device, host_recv.data(), Device::cpu(), recv_bytes);
  impl_->staging->release(std::move(host_send));
  impl_->staging->release(std::move(host_recv));
}

void MpiCommunicator::do_barrier() {
  Watched watched(impl_->watchdog.get(), "barrier", 0, DataType::kUint8);
  SYNCBN_MPI_CHECK(MPI_Barrier(impl_->comm));
}

std::shared_ptr<Communicator> MpiCommunicator::do_split(int color, int key) {
  MPI_Comm group = MPI_COMM_NULL;
  {
    Watched watched(impl_->watchdog.get(), "split", 0, DataType::kUint8);
    SYNCBN_MPI_CHECK(MPI_Comm_split(impl_->comm, color < 0 ? MPI_UNDEFINED : color, key, &group));
  }
  if (group == MPI_COMM_NULL) return nullptr;
  // Owned from here on, so that it is freed even if the constructor throws.
  auto impl = std::make_unique<Impl>(group, true);
  std::shared_ptr<MpiCommunicator> split(new MpiCommunicator(std::move(impl)));
  split->max_elements_per_call_ = max_elements_per_call_;
  return split;
}

}  // namespace syncbn::dist
