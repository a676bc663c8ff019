#pragma once
// Where the launcher placed this process, read from its environment before MPI starts (e.g. to
// choose a GPU: local_rank % device count). MPI's own answer (Communicator) is authoritative
// once it runs.
#include <string>

namespace syncbn::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  // Processes on this host; 0 when the launcher does not say (SLURM without
  // SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE and SLURM_NODEID).
  int local_size = 1;
  std::string source = "none";  // "OMPI", "SLURM" or "none" (a singleton)
};

// Open MPI's mpirun: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE.
// Else SLURM's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, and this node's entry of
// SLURM_STEP_TASKS_PER_NODE (or SLURM_TASKS_PER_NODE), e.g. "4(x2),3", at SLURM_NODEID.
// Else a singleton. A malformed or inconsistent value throws syncbn::Error naming the variable.
LaunchEnv read_launch_env();

}  // namespace syncbn::dist
