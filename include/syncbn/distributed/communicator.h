#pragma once
// Communicator: the collectives that distributed training needs (allreduce, broadcast,
// allgather, barrier, split), behind the one virtual interface where backends differ: MPI on
// host memory (mpi_communicator.h), NCCL on device memory.
//
// Every collective is called by every rank of the communicator, in the same order, with the
// same count, type and root; buffers live on `device` (device memory is staged by backends that
// cannot read it). The base class checks arguments and counts calls and bytes (CommStats), then
// hands over to the backend's protected do_* methods.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "syncbn/device.h"
#include "syncbn/tensor.h"

namespace syncbn::dist {

enum class DataType { kFloat32, kFloat64, kInt32, kInt64, kUint8 };

std::size_t element_size(DataType type);
const char* data_type_name(DataType type);  // "float32", ...

// A non-blocking collective in flight. Its buffer must stay alive and untouched until wait()
// returns (or test() returns true). Destroying a Request that has not completed waits for it,
// so that the backend never writes into freed memory.
class Request {
 public:
  virtual ~Request();
  // Blocks until the operation has completed and its result is in the buffer. Idempotent.
  virtual void wait() = 0;
  // True once the operation has completed (the result is then in the buffer); never blocks.
  virtual bool test() = 0;
};

// What a communicator has done since construction or reset_stats(). Bytes are the size of the
// result buffer on this rank: count * element size for allreduce (blocking and non-blocking
// alike) and broadcast, count_per_rank * size() * element size for allgather.
struct CommStats {
  int64_t allreduce_calls = 0;
  int64_t allreduce_bytes = 0;
  int64_t broadcast_calls = 0;
  int64_t broadcast_bytes = 0;
  int64_t allgather_calls = 0;
  int64_t allgather_bytes = 0;
};

class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // This rank's place among the ranks of this communicator that share its host.
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;

  // data[i] = sum over ranks of data[i], in place.
  void allreduce_sum(void* data, int64_t count, DataType type, Device device = Device::cpu());
  // Starts allreduce_sum and returns at once; the result is in `data` after wait().
  std::unique_ptr<Request> iallreduce_sum(void* data, int64_t count, DataType type,
                                          Device device = Device::cpu());
  // Every rank's `data` becomes root's.
  void broadcast(void* data, int64_t count, DataType type, int root, Device device = Device::cpu());
  // recv (count_per_rank * size() elements) holds rank r's `send` at offset r * count_per_rank.
  // send and recv must not overlap.
  void allgather(const void* send, void* recv, int64_t count_per_rank, DataType type,
                 Device device = Device::cpu());
  void barrier();
  // Collective over this communicator: ranks with the same color form a new communicator,
  // ordered by key (ties by rank). A negative color joins no group and gets nullptr.
  std::shared_ptr<Communicator> split(int color, int key);

  // Float32 tensors, on their own device.
  void allreduce_sum(Tensor& tensor);
  std::unique_ptr<Request> iallreduce_sum(Tensor& tensor);
  void broadcast(Tensor& tensor, int root);
  // Every rank's string, indexed by rank; lengths may differ across ranks. Two allgathers
  // (lengths, then strings padded to the longest), counted as such in stats().
  std::vector<std::string> allgather_strings(const std::string& text);

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = CommStats{}; }

 protected:
  Communicator() = default;

  // Arguments are checked (count >= 0, data non-null when count > 0, root in range) before
  // these are called.
  virtual void do_allreduce_sum(void* data, int64_t count, DataType type, Device device) = 0;
  virtual std::unique_ptr<Request> do_iallreduce_sum(void* data, int64_t count, DataType type,
                                                     Device device) = 0;
  virtual void do_broadcast(void* data, int64_t count, DataType type, int root, Device device) = 0;
  virtual void do_allgather(const void* send, void* recv, int64_t count_per_rank, DataType type,
                            Device device) = 0;
  virtual void do_barrier() = 0;
  virtual std::shared_ptr<Communicator> do_split(int color, int key) = 0;

 private:
  CommStats stats_;
};

}  // namespace syncbn::dist
