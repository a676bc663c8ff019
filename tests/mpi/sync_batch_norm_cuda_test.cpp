// SyncBatchNorm on the GPU under mpirun with P = 1..4 ranks sharing the visible GPU(s) over the
// MPI backend (device memory staged through the host, or passed to CUDA-aware MPI): the same
// equivalence with one process's BatchNorm on the concatenated batch as the CPU test. Skips
// without a CUDA device.
#include <gtest/gtest.h>

#include "support/cuda.h"
#include "sync_batch_norm_check.h"
#include "syncbn/distributed/mpi_communicator.h"

namespace syncbn::nn {
namespace {

using testing::check_against_concatenated_batch;
using testing::uneven_sizes;

// Rank r uses GPU r % count, as syncbn-train places ranks (docs/DESIGN.md §5).
Device rank_device(const dist::Communicator& comm) {
  const Device device = Device::cuda(comm.local_rank() % cuda_device_count());
  set_current_device(device);
  return device;
}

TEST(SyncBatchNormCudaTest, UnevenBatchesWithAnEmptyRankMatchOneProcess) {
  SYNCBN_REQUIRE_CUDA();
  auto comm = dist::MpiCommunicator::world();
  check_against_concatenated_batch(*comm, uneven_sizes(comm->size()), 0.1, true, 2,
                                   rank_device(*comm));
}

TEST(SyncBatchNormCudaTest, CumulativeAverageWithoutAffineMatchesOneProcess) {
  SYNCBN_REQUIRE_CUDA();
  auto comm = dist::MpiCommunicator::world();
  check_against_concatenated_batch(*comm, uneven_sizes(comm->size()), std::nullopt, false, 3,
                                   rank_device(*comm));
}

TEST(SyncBatchNormCudaTest, GroupsOfTwoConsecutiveRanksMatchTheirGroupsConcatenatedBatch) {
  SYNCBN_REQUIRE_CUDA();
  auto comm = dist::MpiCommunicator::world();
  auto group = comm->split(comm->rank() / 2, comm->rank());
  const std::vector<int64_t> sizes =
      group->size() == 2 ? std::vector<int64_t>{6, 1} : std::vector<int64_t>{3};
  check_against_concatenated_batch(*group, sizes, 0.1, true, 10 + comm->rank() / 2,
                                   rank_device(*comm));
}

}  // namespace
}  // namespace syncbn::nn
