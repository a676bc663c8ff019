// Built when CMake found no NCCL (or no CUDA): the NCCL backend reports its absence.
#include "syncbn/distributed/nccl_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {

bool nccl_available() { return false; }

std::string nccl_version() { return {}; }

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator>, int) {
  SYNCBN_FAIL(
      "this build has no NCCL (configured without CUDA, with SYNCBN_CUDA=OFF, or without "
      "an NCCL library; NCCL_HOME points CMake to one): use the MPI communicator");
}

}  // namespace syncbn::dist
