// The messages of the NCCL backend for CUDA errors met on its collectives
// (distributed/nccl_check.h) and of SYNCBN_CUDA_CHECK (cuda/check.h), which the backend's other
// CUDA calls report through. The CUDA runtime names and describes its error codes without a device,
// so these run on every machine of a build with NCCL; the expected texts are CUDA's documented
// descriptions, written out here.
#include <gtest/gtest.h>

#include <string>

#if defined(SYNCBN_WITH_NCCL)
#include "cuda/check.h"
#include "distributed/nccl_check.h"
#include "syncbn/error.h"
#endif

namespace syncbn::dist {
namespace {

#if defined(SYNCBN_WITH_NCCL)

TEST(NcclCheckTest, AKernelFaultMetOnACollectiveIsReportedAsACudaFailureWithItsName) {
  EXPECT_EQ(detail::cuda_error_on_collective(cudaErrorIllegalAddress, "cudaEventQuery",
                                             "the NCCL allreduce"),
            "a CUDA kernel failed before or during the NCCL allreduce: cudaErrorIllegalAddress (an "
            "illegal memory access was encountered); the CUDA context is unusable");
}

TEST(NcclCheckTest, AnyOtherCudaErrorOnACollectiveNamesTheCudaCallThatReturnedIt) {
  EXPECT_EQ(detail::cuda_error_on_collective(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent",
                                             "the NCCL allreduce"),
            "the CUDA call cudaStreamWaitEvent for the NCCL allreduce failed: "
            "cudaErrorInvalidResourceHandle (invalid resource handle)");
}

TEST(NcclCheckTest, KernelFaultsAreStickyAndCallErrorsAreNot) {
  for (const cudaError_t fault :
       {cudaErrorIllegalAddress, cudaErrorLaunchTimeout, cudaErrorAssert,
        cudaErrorHardwareStackError, cudaErrorIllegalInstruction, cudaErrorMisalignedAddress,
        cudaErrorInvalidAddressSpace, cudaErrorInvalidPc, cudaErrorLaunchFailure}) {
    EXPECT_TRUE(cuda::is_sticky_error(fault)) << cudaGetErrorName(fault);
  }
  for (const cudaError_t error : {cudaSuccess, cudaErrorNotReady, cudaErrorInvalidValue,
                                  cudaErrorMemoryAllocation, cudaErrorInvalidResourceHandle}) {
    EXPECT_FALSE(cuda::is_sticky_error(error)) << cudaGetErrorName(error);
  }
}

cudaError_t returns_illegal_address() { return cudaErrorIllegalAddress; }
cudaError_t returns_invalid_value() { return cudaErrorInvalidValue; }

std::string cuda_check_message(cudaError_t (*call)()) {
  try {
    SYNCBN_CUDA_CHECK(call());
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

TEST(NcclCheckTest, TheCudaCheckNamesCudaAndSaysWhereAStickyErrorCameFrom) {
  EXPECT_EQ(cuda_check_message(returns_invalid_value)
                .rfind("CUDA call call() failed: cudaErrorInvalidValue (invalid argument) [", 0),
            0u)
      << cuda_check_message(returns_invalid_value);
  EXPECT_EQ(cuda_check_message(returns_illegal_address)
                .rfind("CUDA call call() failed: cudaErrorIllegalAddress (an illegal memory access "
                       "was encountered); a CUDA kernel failed before this call, and the CUDA "
                       "context is unusable [",
                       0),
            0u)
      << cuda_check_message(returns_illegal_address);
}

#else

TEST(NcclCheckTest, NeedsABuildWithNccl) { GTEST_SKIP() << "this build has no NCCL"; }

#endif

}  // namespace
}  // namespace syncbn::dist
