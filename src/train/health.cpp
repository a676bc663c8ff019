#include "train/health.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "syncbn/error.h"
#include "syncbn/nn/activation.h"
#include "syncbn/train/metrics.h"

namespace syncbn::train {

namespace {

double l2_norm(const Tensor& tensor) {
  if (!tensor.defined() || tensor.numel() == 0) return 0.0;
  double sum = 0;
  for (float v : tensor.to_vector()) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

double mean_abs(const Tensor& tensor) {
  double sum = 0;
  for (float v : tensor.to_vector()) sum += std::fabs(static_cast<double>(v));
  return sum / static_cast<double>(std::max<int64_t>(1, tensor.numel()));
}

double mean(const Tensor& tensor) {
  double sum = 0;
  for (float v : tensor.to_vector()) sum += v;
  return sum / static_cast<double>(std::max<int64_t>(1, tensor.numel()));
}

double zero_fraction(const Tensor& tensor) {
  if (!tensor.defined() || tensor.numel() == 0) return 0.0;
  int64_t zeros = 0;
  for (float v : tensor.to_vector()) zeros += v == 0.0f;
  return static_cast<double>(zeros) / static_cast<double>(tensor.numel());
}

// Three significant digits: "0.0001", "2.1e-05", "87.8".
std::string brief(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", value);
  return text;
}

// "name: what value outside [low, high]" when value is outside (NaN is outside).
void flag_outside(std::vector<std::string>& flags, const std::string& name, const char* what,
                  double value, double low, double high) {
  if (value >= low && value <= high) return;
  flags.push_back(name + ": " + what + " " + brief(value) + " outside [" + brief(low) + ", " +
                  brief(high) + "]");
}

void collect_relus(const nn::Module& module, const std::string& prefix,
                   std::vector<ReluHealth>& out) {
  for (const auto& [name, child] : module.children()) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (const auto* relu = dynamic_cast<const nn::ReLU*>(child.get())) {
      out.push_back({path, zero_fraction(relu->output())});
    }
    collect_relus(*child, path, out);
  }
}

// The module's type name at a dotted path ("layer1.0.bn1"; "" is the model itself).
std::string type_at(const nn::Module& model, const std::string& path) {
  const nn::Module* module = &model;
  std::size_t at = 0;
  while (at < path.size()) {
    const std::size_t dot = std::min(path.find('.', at), path.size());
    module = module->child(path.substr(at, dot - at)).get();  // owned by its parent
    at = dot + 1;
  }
  return module->type_name();
}

}  // namespace

bool health_due(int64_t every, int64_t step, bool epoch_ends) {
  if (every < 0) return false;
  if (every == 0) return epoch_ends;
  return step % every == 0;
}

HealthReport health_report(const nn::Module& model, int64_t step) {
  HealthReport report;
  report.step = step;
  for (const auto& [name, param] : model.named_parameters()) {
    ParameterHealth p{name, l2_norm(param->value), l2_norm(param->grad), 0.0,
                      static_cast<int64_t>(param->value.ndim())};
    p.grad_rms =
        p.grad_norm / std::sqrt(static_cast<double>(std::max<int64_t>(1, param->value.numel())));
    report.parameters.push_back(p);
    if (p.ndim >= 2) {
      flag_outside(report.flags, name, "gradient RMS", p.grad_rms, kGradRmsLow, kGradRmsHigh);
    }
  }
  // A norm layer with running statistics: both buffers under one module name.
  std::map<std::string, std::pair<Tensor, Tensor>> stats;
  std::vector<std::string> order;
  for (const auto& [name, buffer] : model.named_buffers()) {
    const std::size_t dot = name.rfind('.');
    const std::string module = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string leaf = name.substr(dot == std::string::npos ? 0 : dot + 1);
    if (leaf != "running_mean" && leaf != "running_var") continue;
    if (!stats.count(module)) order.push_back(module);
    (leaf == "running_mean" ? stats[module].first : stats[module].second) = buffer;
  }
  for (const std::string& module : order) {
    const auto& [running_mean, running_var] = stats[module];
    if (!running_mean.defined() || !running_var.defined()) continue;
    NormHealth n{module, type_at(model, module), mean_abs(running_mean), mean(running_var)};
    report.norms.push_back(n);
    if (!(n.mean_abs_running_mean < kRunningMeanHigh)) {
      report.flags.push_back(module + ": mean |running_mean| " + brief(n.mean_abs_running_mean) +
                             " >= " + brief(kRunningMeanHigh));
    }
    flag_outside(report.flags, module, "mean running_var", n.mean_running_var, kRunningVarLow,
                 kRunningVarHigh);
  }
  collect_relus(model, "", report.relus);
  for (const auto& relu : report.relus) {
    if (!(relu.zero_fraction <= kDeadReluHigh)) {
      report.flags.push_back(relu.name + ": dead ReLU fraction " + brief(relu.zero_fraction) +
                             " > " + brief(kDeadReluHigh));
    }
  }
  return report;
}

std::string health_json(const HealthReport& report) {
  nlohmann::ordered_json parameters = nlohmann::ordered_json::object();
  for (const auto& p : report.parameters)
    parameters[p.name] = {{"weight_norm", p.weight_norm},
                          {"grad_norm", p.grad_norm},
                          {"grad_rms", p.grad_rms},
                          {"ndim", p.ndim}};
  nlohmann::ordered_json norms = nlohmann::ordered_json::object();
  for (const auto& n : report.norms) {
    norms[n.name] = {{"type", n.type},
                     {"mean_abs_running_mean", n.mean_abs_running_mean},
                     {"mean_running_var", n.mean_running_var}};
  }
  nlohmann::ordered_json relus = nlohmann::ordered_json::object();
  for (const auto& r : report.relus) relus[r.name] = r.zero_fraction;
  // dump() writes NaN and infinities as null, so the line stays valid JSON.
  const nlohmann::ordered_json row = {{"step", report.step},
                                      {"parameters", parameters},
                                      {"norms", norms},
                                      {"relu_zero_fraction", relus},
                                      {"flags", report.flags}};
  return row.dump();
}

std::string health_text(const HealthReport& report, int64_t epoch) {
  std::string text;
  char line[256];
  std::snprintf(line, sizeof line, "health at step %lld (epoch %lld): %zu flag(s)\n",
                static_cast<long long>(report.step), static_cast<long long>(epoch),
                report.flags.size());
  text += line;
  for (const auto& p : report.parameters) {
    std::snprintf(line, sizeof line,
                  "  %-24s weight norm %-10.4g grad norm %-10.4g grad RMS %.3g\n", p.name.c_str(),
                  p.weight_norm, p.grad_norm, p.grad_rms);
    text += line;
  }
  for (const auto& n : report.norms) {
    std::snprintf(line, sizeof line, "  %-24s %s mean |running_mean| %.4g, mean running_var %.4g\n",
                  n.name.c_str(), n.type.c_str(), n.mean_abs_running_mean, n.mean_running_var);
    text += line;
  }
  for (const auto& r : report.relus) {
    std::snprintf(line, sizeof line, "  %-24s ReLU zero fraction %.3f\n", r.name.c_str(),
                  r.zero_fraction);
    text += line;
  }
  for (const auto& flag : report.flags) text += "  FLAG " + flag + "\n";
  return text;
}

std::string publish_health(const HealthReport& report, int64_t epoch, int64_t every,
                           const std::string& metrics_path) {
  std::fputs(health_text(report, epoch).c_str(), stdout);
  std::fflush(stdout);
  if (every == 0) return health_json(report);
  if (!metrics_path.empty()) {
    append_metrics_line(metrics_path, "{\"health_step\":" + std::to_string(report.step) +
                                          ",\"epoch\":" + std::to_string(epoch) +
                                          ",\"health\":" + health_json(report) + "}");
  }
  return "";
}

}  // namespace syncbn::train
