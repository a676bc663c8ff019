// What every build says about its NCCL backend, with or without a GPU (the backend's own tests
// are tests/cuda/nccl_communicator_cuda_test.cpp and syncbn-bench-nccl).
#include <gtest/gtest.h>

#include <string>

#include "syncbn/distributed/cuda_aware.h"
#include "syncbn/distributed/nccl_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {
namespace {

TEST(NcclAvailabilityTest, ABuildWithNcclReportsTheLibraryVersion) {
  if (!nccl_available()) GTEST_SKIP() << "this build has no NCCL";
  const std::string version = nccl_version();  // "2.28.9": no GPU needed
  ASSERT_FALSE(version.empty());
  EXPECT_EQ(version.rfind("2.", 0), 0u) << version;
}

TEST(NcclAvailabilityTest, ABuildWithoutNcclSaysSoWhenAskedForACommunicator) {
  if (nccl_available()) GTEST_SKIP() << "this build has NCCL";
  EXPECT_TRUE(nccl_version().empty());
  try {
    make_nccl_communicator(nullptr, 0);
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("this build has no NCCL"), std::string::npos)
        << error.what();
  }
}

TEST(NcclAvailabilityTest, NoCommunicatorWithoutABootstrapOrADevice) {
  // Whatever the build: a clear error, never a crash.
  EXPECT_THROW(make_nccl_communicator(nullptr, 0), Error);
}

TEST(CudaAwareMpiTest, IsFalseWhileMpiIsNotRunning) {
  // The unit tests do not start MPI; the answer is then "no", and nothing is cached.
  EXPECT_FALSE(mpi_cuda_aware());
  wait_for_device_work(Device::cpu());  // a no-op for the CPU
}

}  // namespace
}  // namespace syncbn::dist
