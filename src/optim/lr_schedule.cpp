#include "syncbn/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "syncbn/error.h"

namespace syncbn::optim {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::kConstant;
  if (name == "step") return ScheduleKind::kStep;
  if (name == "cosine") return ScheduleKind::kCosine;
  SYNCBN_FAIL("unknown learning-rate schedule '", name, "': expected constant, step or cosine");
}

std::string schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant:
      return "constant";
    case ScheduleKind::kStep:
      return "step";
    case ScheduleKind::kCosine:
      return "cosine";
  }
  SYNCBN_FAIL("invalid ScheduleKind ", static_cast<int>(kind));
}

namespace {

int64_t warmup_steps_of(const LrScheduleOptions& options) {
  return static_cast<int64_t>(std::llround(options.warmup_epochs() * options.steps_per_epoch()));
}

// Checks every option, whatever the step, so a bad configuration fails on the first call.
void validate(const LrScheduleOptions& options) {
  SYNCBN_CHECK(options.base_lr() >= 0.0, "lr schedule: base_lr must be >= 0, got ",
               options.base_lr());
  SYNCBN_CHECK(options.steps_per_epoch() > 0, "lr schedule: steps_per_epoch must be > 0, got ",
               options.steps_per_epoch());
  SYNCBN_CHECK(options.total_epochs() >= 0, "lr schedule: total_epochs must be >= 0, got ",
               options.total_epochs());
  SYNCBN_CHECK(options.warmup_epochs() >= 0.0, "lr schedule: warmup_epochs must be >= 0, got ",
               options.warmup_epochs());
  if (options.kind() == ScheduleKind::kStep) {
    SYNCBN_CHECK(options.step_size_epochs() > 0, "lr schedule: step_size_epochs must be > 0, got ",
                 options.step_size_epochs());
    SYNCBN_CHECK(options.gamma() >= 0.0, "lr schedule: gamma must be >= 0, got ", options.gamma());
  }
  if (options.kind() == ScheduleKind::kCosine) {
    const int64_t total_steps = options.total_epochs() * options.steps_per_epoch();
    SYNCBN_CHECK(total_steps > warmup_steps_of(options),
                 "lr schedule: cosine needs steps after the warmup (", warmup_steps_of(options),
                 " warmup steps of ", total_steps, " in total)");
  }
}

}  // namespace

double lr_at(const LrScheduleOptions& options, int64_t global_step) {
  validate(options);
  SYNCBN_CHECK(global_step >= 0, "lr schedule: global_step must be >= 0, got ", global_step);

  const int64_t warmup_steps = warmup_steps_of(options);
  if (global_step < warmup_steps) {
    return options.base_lr() * static_cast<double>(global_step + 1) /
           static_cast<double>(warmup_steps);
  }
  switch (options.kind()) {
    case ScheduleKind::kConstant:
      return options.base_lr();
    case ScheduleKind::kStep: {
      const int64_t epoch = global_step / options.steps_per_epoch();
      return options.base_lr() *
             std::pow(options.gamma(), static_cast<double>(epoch / options.step_size_epochs()));
    }
    case ScheduleKind::kCosine: {
      const int64_t decay_steps = options.total_epochs() * options.steps_per_epoch() - warmup_steps;
      const int64_t t = std::min(global_step - warmup_steps, decay_steps);
      return options.base_lr() * 0.5 *
             (1.0 + std::cos(M_PI * static_cast<double>(t) / static_cast<double>(decay_steps)));
    }
  }
  SYNCBN_FAIL("invalid ScheduleKind ", static_cast<int>(options.kind()));
}

double scaled_lr(double base_lr, int64_t global_batch) {
  SYNCBN_CHECK(global_batch > 0, "scaled_lr: global batch must be > 0, got ", global_batch);
  return base_lr * static_cast<double>(global_batch) / 256.0;
}

}  // namespace syncbn::optim
