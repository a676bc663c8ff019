#pragma once
// Threads of the CPU kernels.
namespace syncbn {

// Sets the number of threads of the CPU kernels (OpenMP). OpenBLAS is kept at one thread: the
// GEMM front end splits products across the OpenMP threads itself (see src/cpu/blas.h).
// Throws syncbn::Error when n < 1.
void set_num_threads(int n);
// The number of threads a CPU kernel started now would use (1 inside a parallel region).
int num_threads();

}  // namespace syncbn
