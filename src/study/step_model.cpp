#include "study/step_model.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "study/spec.h"
#include "syncbn/error.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/models.h"
#include "util/format.h"

namespace syncbn::study {

AllreduceAlgorithm parse_allreduce_algorithm(const std::string& name) {
  if (name == "ring") return AllreduceAlgorithm::kRing;
  if (name == "recursive-doubling") return AllreduceAlgorithm::kRecursiveDoubling;
  if (name == "rabenseifner") return AllreduceAlgorithm::kRabenseifner;
  if (name == "tree") return AllreduceAlgorithm::kTree;
  if (name == "mpi") return AllreduceAlgorithm::kMpi;
  if (name == "nccl") return AllreduceAlgorithm::kNccl;
  SYNCBN_FAIL("unknown allreduce algorithm '", name,
              "' (expected ring, recursive-doubling, rabenseifner, tree, mpi or nccl)");
}

std::string allreduce_algorithm_name(AllreduceAlgorithm algorithm) {
  switch (algorithm) {
    case AllreduceAlgorithm::kRing:
      return "ring";
    case AllreduceAlgorithm::kRecursiveDoubling:
      return "recursive-doubling";
    case AllreduceAlgorithm::kRabenseifner:
      return "rabenseifner";
    case AllreduceAlgorithm::kTree:
      return "tree";
    case AllreduceAlgorithm::kMpi:
      return "mpi";
    case AllreduceAlgorithm::kNccl:
      break;
  }
  return "nccl";
}

int64_t ceil_log2(int64_t ranks) {
  int64_t steps = 0;
  while ((int64_t{1} << steps) < ranks) ++steps;
  return steps;
}

double allreduce_seconds(AllreduceAlgorithm algorithm, int64_t ranks, double bytes,
                         const Network& network) {
  SYNCBN_CHECK(ranks >= 1, "allreduce over ", ranks, " ranks");
  SYNCBN_CHECK(bytes >= 0, "allreduce of ", bytes, " bytes");
  if (ranks == 1) return 0;
  const double p = static_cast<double>(ranks);
  const double log_p = static_cast<double>(ceil_log2(ranks));
  const double alpha = network.alpha_seconds;
  const double seconds_per_byte = 1.0 / network.bandwidth_bytes_per_second;
  // Ring: reduce-scatter then allgather, P-1 steps each, every step moving n/P bytes.
  const double ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * bytes * seconds_per_byte;
  // Recursive doubling: log2(P) steps, each exchanging the whole vector.
  const double doubling = log_p * alpha + log_p * bytes * seconds_per_byte;
  // Rabenseifner: reduce-scatter by recursive halving, allgather by recursive doubling.
  const double rabenseifner = 2 * log_p * alpha + 2 * (p - 1) / p * bytes * seconds_per_byte;
  // Tree: reduce to the root and broadcast back, log2(P) steps each, whole vector per step.
  const double tree = 2 * log_p * alpha + 2 * log_p * bytes * seconds_per_byte;
  switch (algorithm) {
    case AllreduceAlgorithm::kRing:
      return ring;
    case AllreduceAlgorithm::kRecursiveDoubling:
      return doubling;
    case AllreduceAlgorithm::kRabenseifner:
      return rabenseifner;
    case AllreduceAlgorithm::kTree:
      return tree;
    case AllreduceAlgorithm::kMpi:
      return std::min({ring, doubling, rabenseifner});
    case AllreduceAlgorithm::kNccl:
      break;
  }
  return std::min(ring, tree);
}

namespace {

// Least squares of t = fixed + per_sample * b; with fixed forced to 0 when `through_origin`.
LinearFit least_squares(const std::vector<std::pair<double, double>>& points, bool through_origin) {
  double n = 0, sb = 0, st = 0, sbb = 0, sbt = 0;
  for (const auto& [b, t] : points) {
    n += 1;
    sb += b;
    st += t;
    sbb += b * b;
    sbt += b * t;
  }
  LinearFit fit;
  const double det = n * sbb - sb * sb;
  if (through_origin || det <= 1e-12 * sbb * n) {
    fit.per_sample = sbt / sbb;
    return fit;
  }
  fit.per_sample = (n * sbt - sb * st) / det;
  fit.fixed = (st - fit.per_sample * sb) / n;
  return fit;
}

}  // namespace

LinearFit fit_linear(const std::vector<std::pair<double, double>>& points) {
  SYNCBN_CHECK(!points.empty(), "no (batch, seconds) points to fit compute time to");
  for (const auto& [b, t] : points) {
    SYNCBN_CHECK(b > 0 && std::isfinite(t) && t >= 0, "bad compute point: batch ", b, ", ", t,
                 " s");
  }
  LinearFit fit = least_squares(points, false);
  if (fit.fixed < 0) fit = least_squares(points, true);
  if (fit.per_sample < 0) {
    // Time does not grow with the batch here: all of it is per-step overhead.
    double mean = 0;
    for (const auto& point : points) mean += point.second;
    fit = {mean / static_cast<double>(points.size()), 0};
  }
  return fit;
}

ComputeProfile profile_from_total(const LinearFit& total) {
  ComputeProfile profile;
  profile.forward = {total.fixed / 3, total.per_sample / 3};
  profile.backward = {total.fixed * 2 / 3, total.per_sample * 2 / 3};
  return profile;
}

std::vector<int64_t> gradient_buckets(const std::vector<int64_t>& parameter_bytes_backward_order,
                                      int64_t first_cap, int64_t cap) {
  // As DataParallel::build_buckets: a bucket closes when it reaches its cap, unless nothing is
  // left to put in a next one.
  std::vector<int64_t> buckets;
  int64_t bytes = 0;
  const std::size_t count = parameter_bytes_backward_order.size();
  for (std::size_t i = 0; i < count; ++i) {
    bytes += parameter_bytes_backward_order[i];
    const int64_t limit = buckets.empty() ? first_cap : cap;
    if (bytes >= limit && i + 1 < count) {
      buckets.push_back(bytes);
      bytes = 0;
    }
  }
  if (bytes > 0) buckets.push_back(bytes);
  return buckets;
}

namespace {

void collect_batch_norms(const nn::Module& module, std::vector<int64_t>& channels) {
  if (const auto* bn = dynamic_cast<const nn::BatchNorm*>(&module)) {
    channels.push_back(bn->options().num_features());
  }
  for (const auto& [name, child] : module.children()) collect_batch_norms(*child, channels);
}

}  // namespace

ModelStructure model_structure(const std::string& name) {
  const auto& names = nn::model_names();
  SYNCBN_CHECK(std::find(names.begin(), names.end(), name) != names.end(), "unknown model '", name,
               "'");
  nn::ModelOptions options;
  options.name(name).norm(nn::NormKind::kBatch);
  const auto model = nn::make_model(options);
  ModelStructure structure;
  structure.name = name;
  collect_batch_norms(*model, structure.batch_norm_channels);
  std::vector<int64_t> bytes_backward_order;
  for (const auto& param : model->parameters()) {
    structure.parameters += param->value.numel();
    bytes_backward_order.push_back(param->value.numel() * static_cast<int64_t>(sizeof(float)));
  }
  std::reverse(bytes_backward_order.begin(), bytes_backward_order.end());
  structure.bucket_bytes = gradient_buckets(bytes_backward_order);
  return structure;
}

int64_t NormSync::group_at(int64_t ranks) const {
  if (!sync) return 1;
  if (group_size == 0) return ranks;
  // As syncbn-train's --sync-group-size: the groups must tile the ranks.
  SYNCBN_CHECK(ranks % group_size == 0, "syncbn:", group_size, ": group size ", group_size,
               " does not divide the number of ranks ", ranks);
  return group_size;
}

NormSync parse_norm_sync(const std::string& name) {
  const NormSpec norm = parse_norm(name);
  SYNCBN_CHECK(norm.norm == "bn" || norm.norm == "syncbn", "unknown norm ", quote_brief(name),
               " for the step model (expected bn, syncbn or syncbn:K)");
  return {norm.norm == "syncbn", norm.sync_group_size};
}

StepTime predict_step(const StepInput& input) {
  SYNCBN_CHECK(input.ranks >= 1 && input.batch_per_rank >= 1,
               "step model needs ranks >= 1 and batch per rank >= 1");
  const double b = static_cast<double>(input.batch_per_rank);
  const double slow = input.compute_slowdown;
  StepTime t;
  t.data = slow * input.compute.data.at(b);
  t.forward = slow * input.compute.forward.at(b);
  t.backward = slow * input.compute.backward.at(b);
  t.optimizer = slow * input.compute.optimizer.at(b);

  t.syncbn_group = input.norm.group_at(input.ranks);
  for (const int64_t c : input.model.batch_norm_channels) {
    const double forward_bytes = static_cast<double>(2 * c + 1) * sizeof(double);
    const double backward_bytes = static_cast<double>(2 * c) * sizeof(double);
    t.syncbn_comm +=
        allreduce_seconds(input.algorithm, t.syncbn_group, forward_bytes, input.network) +
        allreduce_seconds(input.algorithm, t.syncbn_group, backward_bytes, input.network);
  }

  double all_bytes = 0;
  for (const int64_t bytes : input.model.bucket_bytes) all_bytes += static_cast<double>(bytes);
  double ready_bytes = 0, comm_end = 0;
  for (const int64_t bytes : input.model.bucket_bytes) {
    ready_bytes += static_cast<double>(bytes);
    const double ready = t.backward * ready_bytes / all_bytes;
    const double seconds =
        allreduce_seconds(input.algorithm, input.ranks, static_cast<double>(bytes), input.network);
    t.grad_comm += seconds;
    comm_end = std::max(comm_end, ready) + seconds;
  }
  t.grad_comm_exposed = std::max(0.0, comm_end - t.backward);
  t.total = t.data + t.forward + t.backward + t.optimizer + t.syncbn_comm + t.grad_comm_exposed;
  return t;
}

double cpu_share_slowdown(int64_t ranks, int64_t threads_per_rank, int64_t cores) {
  SYNCBN_CHECK(ranks >= 1 && threads_per_rank >= 1 && cores >= 1,
               "cpu sharing needs ranks, threads and cores >= 1");
  return std::max(1.0, static_cast<double>(ranks * threads_per_rank) / static_cast<double>(cores));
}

}  // namespace syncbn::study
