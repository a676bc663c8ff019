// The NCCL backend's environment: the library's version, NCCL_HOSTID per rank, and the check
// that no two ranks share a GPU (contracts in nccl_environment.h).
#include "distributed/nccl_environment.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "distributed/nccl_check.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/distributed/nccl_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

int nccl_version_code() {
  int version = 0;
  SYNCBN_NCCL_CHECK(ncclGetVersion(&version));
  return version;
}

// How NCCL tells hosts apart: NCCL_HOSTID when set, else the host name and the kernel's boot id
// (so that containers with their own names count as hosts of their own, as in NCCL).
std::string nccl_host_identity() {
  if (const char* hostid = std::getenv("NCCL_HOSTID")) return hostid;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return std::string(host) + boot_id;
}

}  // namespace

namespace detail {

void apply_hostid_per_rank(const Communicator& bootstrap) {
  static bool applied = false;
  if (applied) return;
  const char* flag = std::getenv("SYNCBN_NCCL_HOSTID_PER_RANK");
  if (flag == nullptr || *flag == '\0' || std::strcmp(flag, "0") == 0) return;
  SYNCBN_CHECK(std::strcmp(flag, "1") == 0, "SYNCBN_NCCL_HOSTID_PER_RANK must be 0 or 1, got '",
               flag, "'");
  // The world rank: unique in the job, whichever communicator is the bootstrap.
  int world_rank = bootstrap.rank();
  int mpi_running = 0;
  SYNCBN_MPI_CHECK(MPI_Initialized(&mpi_running));
  if (mpi_running) SYNCBN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  std::string base;
  if (const char* hostid = std::getenv("NCCL_HOSTID")) {
    base = hostid;
  } else {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    base = host;
  }
  const std::string hostid = base + "-syncbn-rank" + std::to_string(world_rank);
  SYNCBN_CHECK(setenv("NCCL_HOSTID", hostid.c_str(), 1) == 0, "cannot set NCCL_HOSTID");
  applied = true;
}

void check_one_rank_per_gpu(Communicator& bootstrap, int device) {
  const char* multi_rank = std::getenv("NCCL_MULTI_RANK_GPU_ENABLE");
  const bool allowed =
      nccl_version_code() >= 23000 && multi_rank != nullptr && std::strcmp(multi_rank, "1") == 0;
  char bus_id[64] = {};
  SYNCBN_CUDA_CHECK(cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), device));
  const std::vector<std::string> gpus =
      bootstrap.allgather_strings(nccl_host_identity() + "|" + bus_id);
  if (allowed) return;
  for (std::size_t second = 1; second < gpus.size(); ++second) {
    for (std::size_t first = 0; first < second; ++first) {
      if (gpus[first] != gpus[second]) continue;
      SYNCBN_FAIL("ranks ", first, " and ", second, " of the communicator would share GPU ",
                  gpus[first].substr(gpus[first].rfind('|') + 1), " of one host, and NCCL ",
                  nccl_version(),
                  " allows one rank per GPU. Start at most as many ranks per host as it has GPUs "
                  "(each rank takes local rank % GPU count), or use the MPI backend; for tests "
                  "only, SYNCBN_NCCL_HOSTID_PER_RANK=1 makes NCCL treat every rank as a host of "
                  "its own (slow: its network transport)");
    }
  }
}

}  // namespace detail

bool nccl_available() { return true; }

std::string nccl_version() {
  const int code = nccl_version_code();
  // NCCL_VERSION(X, Y, Z) is X*10000 + Y*100 + Z since 2.9 (X*1000 + Y*100 + Z before).
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int minor = code >= 10000 ? code % 10000 / 100 : code % 1000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

}  // namespace syncbn::dist
