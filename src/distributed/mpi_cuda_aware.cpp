#include <mpi.h>

#include "syncbn/distributed/cuda_aware.h"

// Open MPI's extensions; MPIX_CUDA_AWARE_SUPPORT is 1 when Open MPI was built with CUDA (0 in
// Debian's and Ubuntu's packages). Other MPI libraries have no such header.
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(SYNCBN_WITH_CUDA)
#include "cuda/context.h"
#endif

namespace syncbn::dist {

namespace {

bool query_mpi_cuda_support() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  // Compiled in; MPIX_Query_cuda_support says whether it is enabled in this run (Open MPI can
  // turn it off, e.g. --mca opal_cuda_support 0).
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

}  // namespace

bool mpi_cuda_aware() {
  // 0: unknown, 1: no, 2: yes.
  static std::atomic<int> cached{0};
  const int known = cached.load(std::memory_order_acquire);
  if (known != 0) return known == 2;
  const char* forced = std::getenv("SYNCBN_MPI_CUDA_AWARE");
  if (forced != nullptr && std::strcmp(forced, "0") == 0) return false;
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return false;  // no answer to cache yet
  const bool aware = query_mpi_cuda_support();
  cached.store(aware ? 2 : 1, std::memory_order_release);
  return aware;
}

void wait_for_device_work(Device device) {
  if (!device.is_cuda()) return;
#if defined(SYNCBN_WITH_CUDA)
  const int previous = cuda::current_device();
  if (previous == device.index) {
    cuda::synchronize();
    return;
  }
  cuda::set_device(device.index);
  try {
    cuda::synchronize();
  } catch (...) {
    cudaSetDevice(previous);
    throw;
  }
  cuda::set_device(previous);
#endif
}

}  // namespace syncbn::dist
