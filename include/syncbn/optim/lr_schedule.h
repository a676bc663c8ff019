#pragma once
// Learning-rate schedules evaluated per optimizer step, with the linear warmup and the linear
// scaling rule of Goyal et al., "Accurate, Large Minibatch SGD" (2017).
#include <cstdint>
#include <string>

#include "syncbn/arg.h"

namespace syncbn::optim {

enum class ScheduleKind { kConstant, kStep, kCosine };

// "constant" | "step" | "cosine"; anything else throws syncbn::Error listing the valid names.
ScheduleKind parse_schedule_kind(const std::string& name);
std::string schedule_kind_name(ScheduleKind kind);

struct LrScheduleOptions {
  SYNCBN_ARG(double, base_lr) = 0.1;
  SYNCBN_ARG(ScheduleKind, kind) = ScheduleKind::kConstant;
  SYNCBN_ARG(int64_t, steps_per_epoch) = 1;
  SYNCBN_ARG(int64_t, total_epochs) = 1;
  // Linear warmup over W = round(warmup_epochs * steps_per_epoch) steps: step s < W has
  // lr = base_lr * (s + 1) / W, rising from base_lr / W to base_lr.
  SYNCBN_ARG(double, warmup_epochs) = 0;
  // kStep: lr = base_lr * gamma^floor(epoch / step_size_epochs), epochs counted from step 0.
  SYNCBN_ARG(int64_t, step_size_epochs) = 30;
  SYNCBN_ARG(double, gamma) = 0.1;
};

// The learning rate for optimizer step `global_step` (0-based, counted over all epochs).
// kCosine after warmup: lr = base_lr * (1 + cos(pi * t / T)) / 2 with t = global_step - W and
// T = total_epochs * steps_per_epoch - W, reaching 0 at t = T and staying 0 beyond.
// Throws syncbn::Error on invalid options (steps_per_epoch <= 0, negative values, a cosine
// warmup that leaves no steps).
double lr_at(const LrScheduleOptions& options, int64_t global_step);

// The linear scaling rule: base_lr * global_batch / 256.
double scaled_lr(double base_lr, int64_t global_batch);

}  // namespace syncbn::optim
