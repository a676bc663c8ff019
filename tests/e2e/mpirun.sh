# Sourced by the end-to-end tests: the mpirun command line they share, as the array mpirun_cmd
# (oversubscribed on CI's 2 cores, no binding, shared memory or TCP, waiting ranks yield; as root
# --allow-run-as-root). The same flags as the MPI tests' in tests/CMakeLists.txt.
# shellcheck shell=bash
mpirun_cmd=(mpirun --oversubscribe --bind-to none --mca btl "self,vader,tcp" --mca pml ob1
            --mca mpi_yield_when_idle 1)
if [[ $(id -u) -eq 0 ]]; then mpirun_cmd+=(--allow-run-as-root); fi
