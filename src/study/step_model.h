#pragma once
// A model of one data-parallel training step at P ranks (docs/studies/step-model.md):
//
//   step = data + forward + backward + optimizer + syncbn_comm + grad_comm_exposed
//
// Compute (data, forward, backward, optimizer) is measured, per step at batch b per rank, and
// fitted as fixed + per_sample * b. Every collective costs latency + bytes / bandwidth in the
// alpha-beta model (alpha: seconds per message step, beta here a BANDWIDTH in bytes/s, so a
// step moving n bytes costs alpha + n / beta):
//   ring allreduce        2(P-1) alpha + 2 (P-1)/P n / beta
//     (NCCL's ring; nccl-tests' busBw = algBw * 2(P-1)/P in doc/PERFORMANCE.md is this factor)
//   recursive doubling    log2(P) alpha + log2(P) n / beta
//   Rabenseifner          2 log2(P) alpha + 2 (P-1)/P n / beta
//     (reduce-scatter by recursive halving, allgather by recursive doubling)
//   tree                  2 log2(P) alpha + 2 log2(P) n / beta
//     (reduce up a binary tree, broadcast down: NCCL's tree for small messages, unpipelined)
// ring, recursive doubling and Rabenseifner from Thakur, Rabenseifner & Gropp, "Optimization of
// Collective Communication Operations in MPICH", IJHPCA 19(1), 2005, and MPICH's allreduce.c
// comments; for P not a power of two log2(P) is rounded up (the extra step folding the remainder
// ranks in). SyncBatchNorm adds two allreduces per BN layer per training step, on the critical
// path: the forward's [s1(C), s2(C), n] = 2C+1 doubles and the backward's [sum_dy(C),
// sum_dy_xhat(C)] = 2C doubles (docs/DESIGN.md §3), over its sync group (all P ranks, or groups of
// K consecutive ranks that reduce concurrently: P -> K). Gradient buckets (float32; 1 MiB first,
// then 25 MiB, as DataParallel) are allreduced over P while backward goes on; see predict_step for
// the overlap assumption.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace syncbn::study {

// The alpha-beta network: one message step of n bytes between two ranks costs
// alpha_seconds + n / bandwidth_bytes_per_second.
struct Network {
  double alpha_seconds = 0;
  double bandwidth_bytes_per_second = 1;
};

// kMpi: the cheapest of ring, recursive doubling and Rabenseifner for this size and P, as MPI's
// tuned allreduce picks recursive doubling for small messages and ring/Rabenseifner for large
// ones (Open MPI's tuned module, MPICH). kNccl: the cheaper of ring and tree, as NCCL's tuner.
enum class AllreduceAlgorithm { kRing, kRecursiveDoubling, kRabenseifner, kTree, kMpi, kNccl };

AllreduceAlgorithm parse_allreduce_algorithm(const std::string& name);
std::string allreduce_algorithm_name(AllreduceAlgorithm algorithm);

// Seconds for an allreduce of `bytes` per rank over `ranks` ranks; 0 for one rank.
double allreduce_seconds(AllreduceAlgorithm algorithm, int64_t ranks, double bytes,
                         const Network& network);

// ceil(log2(ranks)): the message steps of the recursive algorithms.
int64_t ceil_log2(int64_t ranks);

// t(b) = fixed + per_sample * b, seconds per step at batch b per rank.
struct LinearFit {
  double fixed = 0;
  double per_sample = 0;
  double at(double batch) const { return fixed + per_sample * batch; }
};

// Least squares through (batch, seconds) points. One point (or one distinct batch): no fixed
// part can be told apart, so fixed = 0 and per_sample = mean(t / b). Negative coefficients
// (noise) are clamped to 0 and the other refitted. Throws on no points or batch <= 0.
LinearFit fit_linear(const std::vector<std::pair<double, double>>& points);

// Per-step compute phases at batch b per rank, each fixed + per_sample * b.
struct ComputeProfile {
  LinearFit data, forward, backward, optimizer;
};

// A profile from total compute per step only (no per-phase times): forward takes a third and
// backward two thirds (backward computes both dx and dW: about twice forward's FLOPs), data and
// optimizer are folded into them.
ComputeProfile profile_from_total(const LinearFit& total);

// What the model needs to know of a network, read from the real model (nn::make_model).
struct ModelStructure {
  std::string name;
  std::vector<int64_t> batch_norm_channels;  // one entry per BatchNorm layer, in module order
  int64_t parameters = 0;                    // learnable scalars
  std::vector<int64_t> bucket_bytes;         // gradient buckets in launch order
};

// Builds `name` with local BatchNorm and walks its modules. Throws on an unknown model name.
ModelStructure model_structure(const std::string& name);

// DataParallel's buckets: parameters in backward order (reverse registration), a bucket closes
// once it holds >= its cap (first_cap for the first, cap after), the last takes the rest.
std::vector<int64_t> gradient_buckets(const std::vector<int64_t>& parameter_bytes_backward_order,
                                      int64_t first_cap = int64_t{1} << 20,
                                      int64_t cap = int64_t{25} << 20);

// Which batch norm: local (no collectives), SyncBN over all ranks, or SyncBN in groups of K.
// Names as syncbn-study's (study::parse_norm): "bn", "syncbn", "syncbn:K"; other norms throw.
struct NormSync {
  bool sync = false;
  int64_t group_size = 0;  // 0: all ranks
  // The ranks one SyncBN allreduce spans at `ranks`; throws when group_size does not divide
  // `ranks` (syncbn-train refuses that run).
  int64_t group_at(int64_t ranks) const;
};
NormSync parse_norm_sync(const std::string& name);

struct StepInput {
  ModelStructure model;
  ComputeProfile compute;
  int64_t batch_per_rank = 1;
  int64_t ranks = 1;
  NormSync norm;
  Network network;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kMpi;
  // Compute time multiplier: ranks sharing cores (see cpu_share_slowdown); 1 on a cluster.
  double compute_slowdown = 1;
};

struct StepTime {
  double data = 0, forward = 0, backward = 0, optimizer = 0;
  double syncbn_comm = 0;        // on the critical path
  double grad_comm = 0;          // all bucket allreduces back to back
  double grad_comm_exposed = 0;  // what backward did not hide
  double total = 0;
  int64_t syncbn_group = 1;  // the group SyncBN reduced over (1: local BN)
};

// The step's time. Overlap assumption: backward produces gradient bytes at a uniform rate, so
// bucket i is ready at backward * (bytes of buckets 0..i) / (all bytes); its allreduce starts
// when it is ready and the previous one has finished (one at a time, as on one communicator);
// exposed = max(0, end of the last allreduce - end of backward). With one bucket (cnn) it is
// all exposed. SyncBN's collectives also block backward; they are added, not overlapped.
StepTime predict_step(const StepInput& input);

// Ranks that share `cores` cores, `threads_per_rank` threads each, compute max(1, P t / cores)
// times slower than one rank alone (the CPU is time-shared; communication waits do not use it).
double cpu_share_slowdown(int64_t ranks, int64_t threads_per_rank, int64_t cores);

}  // namespace syncbn::study
