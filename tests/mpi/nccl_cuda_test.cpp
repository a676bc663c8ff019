// SyncBatchNorm and DataParallel on the GPU with more than one rank, under mpirun with P = 1..4
// (docs/DESIGN.md §3, §4): over the NCCL backend, and DataParallel also over the MPI backend,
// whose non-blocking allreduces stage device memory through the host. With one rank NCCL makes
// an in-place allreduce a no-op, so only P >= 2 shows the collectives work; ranks share the GPU
// when there are more ranks than GPUs (a distinct NCCL_HOSTID per rank lets NCCL accept that).
// Every case skips without a GPU (CI), and fails instead under SYNCBN_REQUIRE_GPU=1.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "data_parallel_check.h"
#include "support/cuda.h"
#include "sync_batch_norm_check.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/distributed/nccl_communicator.h"

namespace syncbn::dist {
namespace {

std::shared_ptr<Communicator> world() { return MpiCommunicator::world(); }

// Rank r uses GPU local_rank % count, as syncbn-train places ranks (docs/DESIGN.md §5).
Device rank_device(const Communicator& comm) {
  const Device device = Device::cuda(comm.local_rank() % cuda_device_count());
  set_current_device(device);
  return device;
}

// An NCCL communicator over the world on this rank's GPU. NCCL refuses two ranks on one GPU
// unless each rank looks like a host of its own (SYNCBN_NCCL_HOSTID_PER_RANK); SyncBN and the
// buckets on two NCCL communicators need implicit launch order, as the trainer sets it.
std::shared_ptr<Communicator> nccl_world(Device device) {
  if (world()->local_size() > cuda_device_count()) {
    setenv("SYNCBN_NCCL_HOSTID_PER_RANK", "1", /*overwrite=*/0);
  }
  setenv("NCCL_LAUNCH_ORDER_IMPLICIT", "1", /*overwrite=*/0);
  return make_nccl_communicator(world(), device.index);
}

#define SYNCBN_REQUIRE_NCCL()                                    \
  do {                                                           \
    if (!nccl_available()) {                                     \
      SYNCBN_SKIP_UNLESS_GPU_REQUIRED("this build has no NCCL"); \
    }                                                            \
  } while (0)

TEST(NcclTrainingTest, SyncBatchNormOverNcclMatchesOneProcessWithAnEmptyRank) {
  SYNCBN_REQUIRE_CUDA();
  SYNCBN_REQUIRE_NCCL();
  const Device device = rank_device(*world());
  auto nccl = nccl_world(device);
  nn::testing::check_against_concatenated_batch(*nccl, nn::testing::uneven_sizes(nccl->size()), 0.1,
                                                true, 21, device);
}

TEST(NcclTrainingTest, SyncBatchNormOverNcclGroupsOfTwoMatchTheirGroupsBatch) {
  SYNCBN_REQUIRE_CUDA();
  SYNCBN_REQUIRE_NCCL();
  const Device device = rank_device(*world());
  auto nccl = nccl_world(device);
  auto group = nccl->split(nccl->rank() / 2, nccl->rank());
  const std::vector<int64_t> sizes =
      group->size() == 2 ? std::vector<int64_t>{5, 2} : std::vector<int64_t>{4};
  nn::testing::check_against_concatenated_batch(*group, sizes, std::nullopt, false,
                                                22 + nccl->rank() / 2, device);
}

TEST(NcclTrainingTest, DataParallelOverNcclEqualsOneProcessOnTheConcatenatedBatch) {
  SYNCBN_REQUIRE_CUDA();
  SYNCBN_REQUIRE_NCCL();
  const Device device = rank_device(*world());
  auto buckets = nccl_world(device);
  // SyncBN on a communicator of its own, as the trainer does, so its small allreduces never
  // queue behind a gradient bucket.
  auto statistics = buckets->split(0, buckets->rank());
  testing::check_steps_match_one_process(
      "cnn", DataParallelOptions().first_bucket_bytes(1024).bucket_bytes(8 * 1024), buckets, device,
      statistics);
}

TEST(MpiCudaTrainingTest, DataParallelOverMpiStagesDeviceBucketsAndEqualsOneProcess) {
  SYNCBN_REQUIRE_CUDA();
  const Device device = rank_device(*world());
  testing::check_steps_match_one_process(
      "cnn", DataParallelOptions().first_bucket_bytes(1024).bucket_bytes(8 * 1024), world(),
      device);
}

}  // namespace
}  // namespace syncbn::dist
