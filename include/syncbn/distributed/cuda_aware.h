#pragma once
// CUDA-aware MPI: whether the MPI library can read and write GPU memory itself, so that
// MpiCommunicator may pass device pointers to MPI instead of staging them through the host.
#include "syncbn/device.h"

namespace syncbn::dist {

// True when this MPI library has CUDA support compiled in (Open MPI's <mpi-ext.h> defines
// MPIX_CUDA_AWARE_SUPPORT to 1) and enabled at run time (MPIX_Query_cuda_support() == 1), and
// SYNCBN_MPI_CUDA_AWARE is not "0" (which forces staging, e.g. to compare the two paths).
// False with other MPI libraries, before MPI_Init and after MPI_Finalize. Cached after the
// first answer while MPI runs.
bool mpi_cuda_aware();

// Blocks until the work queued on `device`'s compute stream is done, so that MPI, which knows
// nothing of that stream, reads finished data. A no-op for the CPU.
void wait_for_device_work(Device device);

}  // namespace syncbn::dist
