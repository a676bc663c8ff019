#pragma once
// The training health report of syncbn-train --health: per layer, the quantities that tell a
// healthy batch-norm network from a broken one, with a flag for each value outside the ranges
// of the classic BN write-up. Rank 0 computes it from its own replica after a step's backward,
// on health steps only, from what that step already left behind (weights, the gradients
// DataParallel averaged, BN buffers, each ReLU's output): no extra pass over the data and no
// collective.
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/nn/module.h"

namespace syncbn::train {

// The write-up's ranges. A value outside raises a flag naming the layer.
// "With BN, gradients stay between 1e-4 and 1e-1": read as the size of a typical gradient
// ELEMENT, i.e. the root mean square grad_norm / sqrt(numel). The whole tensor's L2 norm grows
// with the layer's size (a healthy BN MLP on Fashion-MNIST: 784x256 weight, norm ~1.2, RMS
// ~3e-3) and would flag every healthy run. Checked on weights with ndim >= 2 (Linear/Conv), not
// on biases, whose gradient before a BN is 0 by construction.
constexpr double kGradRmsLow = 1e-4, kGradRmsHigh = 1e-1;
constexpr double kRunningMeanHigh = 5.0;  // mean |running_mean| >= 5: drifting activations
constexpr double kRunningVarLow = 0.1, kRunningVarHigh = 10.0;  // mean running_var outside
// More than 90% of a ReLU's outputs at exactly 0: most of the layer passes no gradient.
constexpr double kDeadReluHigh = 0.9;

struct ParameterHealth {
  std::string name;                       // state_dict name, "1.weight"
  double weight_norm = 0, grad_norm = 0;  // L2 (Frobenius) norms of the whole tensor
  double grad_rms = 0;                    // grad_norm / sqrt(numel)
  int64_t ndim = 0;  // >= 2: a Linear/Conv weight, the only kind the gradient range applies to
};

struct NormHealth {
  std::string name, type;  // module name and type ("2", "BatchNorm1d")
  double mean_abs_running_mean = 0, mean_running_var = 0;
};

struct ReluHealth {
  std::string name;          // module name, "3"
  double zero_fraction = 0;  // of the last forward's outputs
};

struct HealthReport {
  int64_t step = 0;  // 1-based optimizer step
  std::vector<ParameterHealth> parameters;
  std::vector<NormHealth> norms;   // every module with running_mean and running_var buffers
  std::vector<ReluHealth> relus;   // ReLUs that are named children (resnet: not a block's last)
  std::vector<std::string> flags;  // "1.weight: gradient RMS 2.1e-05 outside [0.0001, 0.1]"
};

// Whether `step` (1-based) is a health step: every = -1 off, 0 the epoch's last step (pass
// epoch_ends), K > 0 every K-th step.
bool health_due(int64_t every, int64_t step, bool epoch_ends);

// The report of `model` after the backward of `step` (call it before the optimizer step, so that
// weights and gradients are those of the same step). Copies tensors to the host.
HealthReport health_report(const nn::Module& model, int64_t step);

// One JSON object: {"step": k, "parameters": {name: {"weight_norm", "grad_norm", "grad_rms",
// "ndim"}},
// "norms": {name: {"type", "mean_abs_running_mean", "mean_running_var"}}, "relu_zero_fraction":
// {name: f}, "flags": [...]}; non-finite numbers are null.
std::string health_json(const HealthReport& report);
// Lines for people: a header, one line per layer, the flags.
std::string health_text(const HealthReport& report, int64_t epoch);

// Prints the report (rank 0) and records it for --metrics: with every > 0 appended now as a line
// {"health_step": k, "epoch": e, "health": {...}} to metrics_path (when set), returning ""; with
// every = 0 returned as JSON text for the epoch's metrics line.
std::string publish_health(const HealthReport& report, int64_t epoch, int64_t every,
                           const std::string& metrics_path);

}  // namespace syncbn::train
