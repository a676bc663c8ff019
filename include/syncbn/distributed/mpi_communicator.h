#pragma once
// MpiCommunicator: the Communicator over an MPI communicator (the world, or a group made by
// split). Host memory goes to MPI directly; device memory is staged through reused host
// buffers. <mpi.h> stays out of this header: the MPI_Comm lives behind a pointer to an
// implementation, so users of syncbn need not include MPI.
#include <cstdint>
#include <memory>

#include "syncbn/distributed/communicator.h"

namespace syncbn::dist {

class MpiCommunicator : public Communicator {
 public:
  // All the processes of the job (MPI_COMM_WORLD). MPI must be initialised (see Runtime).
  static std::shared_ptr<MpiCommunicator> world();

  ~MpiCommunicator() override;  // frees the MPI_Comm it owns (every one but MPI_COMM_WORLD)

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  // MPI counts are int: a larger allreduce or broadcast is split into calls of at most this
  // many elements (default INT_MAX). Tests lower it to exercise the split; every rank of the
  // communicator must use the same value.
  void set_max_elements_per_call(int64_t max_elements);

  struct Impl;  // holds the MPI_Comm; defined in mpi_communicator.cpp

 protected:
  void do_allreduce_sum(void* data, int64_t count, DataType type, Device device) override;
  std::unique_ptr<Request> do_iallreduce_sum(void* data, int64_t count, DataType type,
                                             Device device) override;
  void do_broadcast(void* data, int64_t count, DataType type, int root, Device device) override;
  void do_allgather(const void* send, void* recv, int64_t count_per_rank, DataType type,
                    Device device) override;
  void do_barrier() override;
  std::shared_ptr<Communicator> do_split(int color, int key) override;

 private:
  explicit MpiCommunicator(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int64_t max_elements_per_call_;
};

namespace detail {
// Throws syncbn::Error naming the MPI function and MPI's error string unless code is
// MPI_SUCCESS. Use through SYNCBN_MPI_CHECK.
void check_mpi(int code, const char* call, const char* file, int line);
}  // namespace detail

}  // namespace syncbn::dist

// SYNCBN_MPI_CHECK(MPI_Bcast(...)) wraps every MPI call; communicators made here return errors
// (MPI_ERRORS_RETURN) instead of aborting, so a failure becomes a syncbn::Error.
#define SYNCBN_MPI_CHECK(call) ::syncbn::dist::detail::check_mpi((call), #call, __FILE__, __LINE__)
