#include "study/health_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "syncbn/error.h"
#include "train/health.h"

namespace syncbn::study {

using nlohmann::json;

namespace {

bool finite_number(const json& value) {
  return value.is_number() && std::isfinite(value.get<double>());
}

// The module index of a state_dict name ("4.weight" -> "4", "layer1.0.conv1.weight" ->
// "layer1.0.conv1").
std::string module_of(const std::string& name) { return name.substr(0, name.rfind('.')); }

void add_report(HealthSummary& summary, const json& health) {
  if (!health.is_object()) return;
  ++summary.reports;
  const json norms = health.value("norms", json::object());
  if (norms.is_object()) {
    for (const auto& [module, norm] : norms.items()) {
      summary.has_norms = true;
      if (finite_number(norm.value("mean_abs_running_mean", json())))
        summary.running_mean_max =
            std::max(summary.running_mean_max, norm["mean_abs_running_mean"].get<double>());
      if (finite_number(norm.value("mean_running_var", json()))) {
        const double var = norm["mean_running_var"].get<double>();
        summary.running_var_min = std::min(summary.running_var_min, var);
        summary.running_var_max = std::max(summary.running_var_max, var);
      }
    }
  }
  bool all_in_range = true;
  if (health.contains("parameters") && health["parameters"].is_object()) {
    for (const auto& [name, p] : health["parameters"].items()) {
      if (!is_layer_weight(name, p, norms)) continue;
      const json rms = p.value("grad_rms", json()), norm = p.value("grad_norm", json());
      if (!finite_number(rms) || !finite_number(norm)) {
        all_in_range = false;
        continue;
      }
      const double r = rms.get<double>(), n = norm.get<double>();
      summary.grad_rms_min = std::min(summary.grad_rms_min, r);
      summary.grad_rms_max = std::max(summary.grad_rms_max, r);
      summary.grad_norm_min = std::min(summary.grad_norm_min, n);
      summary.grad_norm_max = std::max(summary.grad_norm_max, n);
      all_in_range = all_in_range && r >= train::kGradRmsLow && r <= train::kGradRmsHigh;
    }
  }
  // The first and last layers of a Sequential (mlp, cnn) by module index: nlohmann's objects
  // iterate in key order, which puts "10.weight" before "4.weight". Other models have no ratio.
  double first = NAN, last = NAN;
  if (health.contains("parameters") && health["parameters"].is_object()) {
    long first_index = -1, last_index = -1;
    for (const auto& [name, p] : health["parameters"].items()) {
      if (!is_layer_weight(name, p, norms)) continue;
      const std::string module = module_of(name);
      char* end = nullptr;
      const long index = std::strtol(module.c_str(), &end, 10);
      if (end == module.c_str() || *end != '\0') {
        first = last = NAN;
        break;
      }
      const json norm = p.value("grad_norm", json());
      if (!finite_number(norm)) {
        first = last = NAN;
        break;
      }
      if (first_index < 0 || index < first_index) {
        first_index = index;
        first = norm.get<double>();
      }
      if (index > last_index) {
        last_index = index;
        last = norm.get<double>();
      }
    }
  }
  if (all_in_range) ++summary.reports_rms_in_range;
  if (std::isfinite(first) && std::isfinite(last) && last > 0)
    summary.first_over_last.push_back(first / last);
  if (health.contains("relu_zero_fraction") && health["relu_zero_fraction"].is_object())
    for (const auto& [module, fraction] : health["relu_zero_fraction"].items())
      if (finite_number(fraction))
        summary.dead_relu_max = std::max(summary.dead_relu_max, fraction.get<double>());
  if (health.contains("flags") && health["flags"].is_array())
    summary.flags += static_cast<int64_t>(health["flags"].size());
}

std::string brief(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2g", value);
  return text;
}

std::string range(double low, double high) {
  if (low > high) return "—";
  return brief(low) + " – " + brief(high);
}

double median(std::vector<double> values) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

}  // namespace

HealthSummary summarize_health(const std::string& metrics_path) {
  HealthSummary summary;
  std::ifstream in(metrics_path);
  if (!in) return summary;
  bool stepwise = false;
  std::vector<json> epoch_reports;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception& e) {
      SYNCBN_FAIL(metrics_path, " line ", number, " is not JSON: ", e.what());
    }
    if (!record.is_object() || !record.contains("health")) continue;
    if (record.contains("health_step")) {
      stepwise = true;
      add_report(summary, record["health"]);
    } else {
      epoch_reports.push_back(record["health"]);
    }
  }
  // A run has --health K (separate lines) or --health (in the epoch lines), not both.
  if (!stepwise)
    for (const json& health : epoch_reports) add_report(summary, health);
  return summary;
}

void merge_health(HealthSummary& into, const HealthSummary& other) {
  into.reports += other.reports;
  into.grad_rms_min = std::min(into.grad_rms_min, other.grad_rms_min);
  into.grad_rms_max = std::max(into.grad_rms_max, other.grad_rms_max);
  into.grad_norm_min = std::min(into.grad_norm_min, other.grad_norm_min);
  into.grad_norm_max = std::max(into.grad_norm_max, other.grad_norm_max);
  into.reports_rms_in_range += other.reports_rms_in_range;
  into.first_over_last.insert(into.first_over_last.end(), other.first_over_last.begin(),
                              other.first_over_last.end());
  into.running_mean_max = std::max(into.running_mean_max, other.running_mean_max);
  into.running_var_min = std::min(into.running_var_min, other.running_var_min);
  into.running_var_max = std::max(into.running_var_max, other.running_var_max);
  into.dead_relu_max = std::max(into.dead_relu_max, other.dead_relu_max);
  into.flags += other.flags;
  into.has_norms = into.has_norms || other.has_norms;
}

std::string health_section(const std::vector<std::pair<std::string, HealthSummary>>& settings) {
  std::ostringstream md;
  bool any = false;
  for (const auto& [label, summary] : settings) any = any || summary.reports > 0;
  if (!any) return "";
  using train::kGradRmsHigh, train::kGradRmsLow, train::kRunningMeanHigh, train::kRunningVarHigh,
      train::kRunningVarLow;
  md << "## Health over training\n\n"
        "From the cells' `--health` records, all seeds of a setting together. Gradients are "
        "those of the Linear/Conv weights (not norm scales, not biases). *In range*: the share of "
        "records where every such weight's gradient RMS lies in ["
     << brief(kGradRmsLow) << ", " << brief(kGradRmsHigh)
     << "], the write-up's healthy range read per element. *First/last*: the first layer's "
        "gradient norm over the last layer's, the median over records (about 1 when gradients "
        "neither grow nor shrink through the layers). BN's running statistics are healthy for "
        "the write-up when mean |running_mean| < "
     << brief(kRunningMeanHigh) << " and mean running_var in [" << brief(kRunningVarLow) << ", "
     << brief(kRunningVarHigh)
     << "]. Non-finite values (a diverged run) are left out of the ranges and count as out of "
        "range.\n\n";
  md << "| setting | records | gradient RMS | in range | gradient norm | first/last | max mean "
        "\\|running_mean\\| | mean running_var | max dead ReLU | flags |\n";
  md << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& [label, s] : settings) {
    if (s.reports == 0) continue;
    char share[32];
    std::snprintf(
        share, sizeof share, "%.0f%%",
        100.0 * static_cast<double>(s.reports_rms_in_range) / static_cast<double>(s.reports));
    const double ratio = median(s.first_over_last);
    md << "| " << label << " | " << s.reports << " | " << range(s.grad_rms_min, s.grad_rms_max)
       << " | " << share << " | " << range(s.grad_norm_min, s.grad_norm_max) << " | "
       << (std::isfinite(ratio) ? brief(ratio) : "—") << " | "
       << (s.has_norms && std::isfinite(s.running_mean_max) ? brief(s.running_mean_max) : "—")
       << " | " << (s.has_norms ? range(s.running_var_min, s.running_var_max) : "—") << " | "
       << (std::isfinite(s.dead_relu_max) ? brief(s.dead_relu_max) : "—") << " | " << s.flags
       << " |\n";
  }
  md << "\n";
  return md.str();
}

}  // namespace syncbn::study
