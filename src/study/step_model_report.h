#pragma once
// The step model's inputs and outputs (syncbn-model): the network fitted to measured allreduce
// times, the compute fitted to measured single-rank steps, the calibration file, the
// measured-vs-predicted table and the projection to many ranks (docs/studies/step-model.md).
#include <cstdint>
#include <iosfwd>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "study/step_model.h"

namespace syncbn::study {

// One measured allreduce: `bytes` per rank over `ranks` ranks took `seconds` (the slowest rank).
struct AllreducePoint {
  int64_t ranks = 0;
  double bytes = 0;
  double seconds = 0;
};

// The rows {"bench": "allreduce", "ranks", "bytes", "seconds"} of syncbn-bench-allreduce's
// output; other lines are skipped. Throws when there is none (`name` names the input).
std::vector<AllreducePoint> read_allreduce_points(std::istream& lines, const std::string& name);

// alpha and bandwidth minimising the squared log-ratio of predicted to measured time over all
// points (a grid search, then a finer one around the best: every point counts by its relative
// error, small latency-bound messages as much as large bandwidth-bound ones). Needs points at
// P > 1 of at least two sizes.
Network fit_network(const std::vector<AllreducePoint>& points, AllreduceAlgorithm algorithm);

// One measured run: mean seconds per training step, and its phases where the metrics had them.
struct MeasuredStep {
  int64_t ranks = 0;
  int64_t batch_per_rank = 0;
  int64_t steps = 0;
  double total = 0;
  bool has_phases = false;
  // Seconds per step; syncbn_comm is also inside forward and backward.
  double data = 0, forward = 0, backward = 0, syncbn_comm = 0, grad_comm_exposed = 0;
  double optimizer = 0, other = 0;
};

// From syncbn-train --metrics lines (one JSON object per epoch). The first epoch is dropped as
// warm-up when there are more; steps per epoch from "steps_in_epoch" or the "step" counter;
// phases from "time" when present. Throws on no usable line.
MeasuredStep measured_from_metrics(std::istream& lines, const std::string& name);

// The ok rows of syncbn-study's results.jsonl for `model`, with their norm names; time per
// step from "time_per_step" (its disjoint parts), else global_batch / images_per_second.
std::vector<std::pair<std::string, MeasuredStep>> measured_from_results(std::istream& lines,
                                                                        const std::string& name,
                                                                        const std::string& model);

// The compute of one run that has phases, as fixed times (per_sample 0): forward and backward
// less half of syncbn_comm each (they contain it), "other" into data. At P ranks this is compute
// measured where it happened, CPU sharing and all.
ComputeProfile compute_of_run(const MeasuredStep& run);

// Compute of one model fitted over single-rank runs at several batches: per phase when every
// run has phases (forward and backward less their share of syncbn_comm, "other" into data),
// else from the total step time (profile_from_total).
ComputeProfile fit_compute(const std::vector<MeasuredStep>& single_rank_runs);

nlohmann::ordered_json compute_to_json(const ComputeProfile& compute);
ComputeProfile compute_from_json(const nlohmann::json& json, const std::string& where);

struct Calibration {
  Network network;  // fitted over every P
  // Fitted at each measured P alone: where ranks share cores, a message step also waits for the
  // peer to be scheduled, so alpha grows with P there.
  std::map<int64_t, Network> network_by_ranks;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kMpi;
  std::map<std::string, ComputeProfile> compute;  // by model name
};
Calibration read_calibration(const std::string& path);

// Measured against predicted, one markdown row per run: the caller fills `predicted`.
struct ValidationRow {
  std::string model, norm;
  MeasuredStep measured;
  StepTime predicted;
  double compute_slowdown = 1;
  bool compute_from_run = false;  // the run's own phases, not the calibration's fit
  Network network;                // the one the prediction used
};
std::string validation_markdown(const std::vector<ValidationRow>& rows);

struct ProjectionSpec {
  std::vector<std::string> models;
  std::vector<int64_t> ranks;
  std::vector<int64_t> batches;
  std::vector<std::string> norms;
  Network network;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kNccl;
  std::map<std::string, ComputeProfile> compute;  // by model name; every model needs one
  double threshold = 0.10;                        // SyncBN share of the step worth reporting
};

// A markdown table per model (rows: batch, ranks; columns: step time per norm and SyncBN's
// share) and a conclusion computed from the numbers: the first P at which SyncBN's collectives
// exceed `threshold` of the step, per norm and batch, and what the groups buy at the largest P.
std::string projection_markdown(const ProjectionSpec& spec);

}  // namespace syncbn::study
