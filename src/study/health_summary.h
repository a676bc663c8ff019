#pragma once
// The `--health` records of a study's cells, summarised per setting for report.md: how large the
// weight gradients of each Linear/Conv layer are and how that changes from the first layer to the
// last, whether the BN running statistics stay in the write-up's "healthy" ranges, and how many
// ReLU outputs are dead. The ranges are those syncbn-train flags (src/train/health.h).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace syncbn::study {

// What one cell's health records (its metrics file's "health_step" lines, or the "health" object
// of its epoch lines) say; counts are 0 and ranges empty (min > max) when it has none.
struct HealthSummary {
  int64_t reports = 0;
  // Over every report and Linear/Conv weight (not BN gamma, not biases; non-finite skipped):
  double grad_rms_min = INFINITY, grad_rms_max = -INFINITY;
  double grad_norm_min = INFINITY, grad_norm_max = -INFINITY;
  int64_t reports_rms_in_range = 0;  // reports where every weight's gradient RMS is in range
  // Per report, the first Linear/Conv weight's gradient norm over the last one's; the median.
  std::vector<double> first_over_last;
  // BN layers: the largest mean |running_mean| and the range of mean running_var.
  double running_mean_max = -INFINITY;
  double running_var_min = INFINITY, running_var_max = -INFINITY;
  double dead_relu_max = -INFINITY;  // the largest fraction of zero ReLU outputs
  int64_t flags = 0;
  bool has_norms = false;
};

// Whether a health record's parameter is a Linear/Conv weight, the kind syncbn-train checks the
// gradient range on: its "ndim" >= 2. Records written before "ndim" existed fall back to the name:
// "<module>.weight" where <module> is not a key of the record's `norms` (BN's gamma).
// `Json` is nlohmann::json or nlohmann::ordered_json.
template <class Json>
bool is_layer_weight(const std::string& name, const Json& parameter, const Json& norms) {
  if (parameter.is_object() && parameter.contains("ndim") && parameter["ndim"].is_number())
    return parameter["ndim"].template get<int64_t>() >= 2;
  const std::size_t dot = name.rfind('.');
  return dot != std::string::npos && name.compare(dot, std::string::npos, ".weight") == 0 &&
         !(norms.is_object() && norms.contains(name.substr(0, dot)));
}

// Reads one metrics file (JSON lines); a line that is not JSON throws naming it.
HealthSummary summarize_health(const std::string& metrics_path);
// Adds `other` (another seed of the same setting) into `into`.
void merge_health(HealthSummary& into, const HealthSummary& other);

// A markdown section "## Health over training" with one row per (label, summary) that has
// reports; "" when none has.
std::string health_section(const std::vector<std::pair<std::string, HealthSummary>>& settings);

}  // namespace syncbn::study
