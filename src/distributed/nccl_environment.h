#pragma once
// What the NCCL backend reads and sets in its environment before the first NCCL communicator
// call: the library's version, NCCL_HOSTID per rank (tests on one GPU), and the check that no two
// ranks share a GPU. Internal header of the NCCL backend.
#include "syncbn/distributed/communicator.h"

namespace syncbn::dist::detail {

// SYNCBN_NCCL_HOSTID_PER_RANK=1 (tests on one GPU): every process gets its own NCCL_HOSTID,
// "<host>-syncbn-rank<world rank>", so that NCCL takes the ranks for separate hosts. NCCL hashes
// NCCL_HOSTID once per process, at its first use, hence before any NCCL call; once per process
// here too.
void apply_hostid_per_rank(const Communicator& bootstrap);

// NCCL 2.5 to 2.29 refuses two ranks of a communicator on one GPU of one host ("Duplicate GPU
// detected", NVIDIA/nccl#418); 2.30 allows it with NCCL_MULTI_RANK_GPU_ENABLE=1 (and MPS).
// Checked before NCCL, collectively, so that every rank fails alike with a message that says
// what to do.
void check_one_rank_per_gpu(Communicator& bootstrap, int device);

}  // namespace syncbn::dist::detail
