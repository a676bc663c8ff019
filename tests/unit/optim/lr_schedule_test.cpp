#include "syncbn/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "syncbn/error.h"

namespace syncbn::optim {
namespace {

LrScheduleOptions options_for(ScheduleKind kind) {
  LrScheduleOptions options;
  options.base_lr(0.4);
  options.kind(kind);
  options.steps_per_epoch(10);
  options.total_epochs(10);
  return options;
}

TEST(LrScheduleTest, WarmupRampsLinearlyFromBaseOverWToBase) {
  LrScheduleOptions options = options_for(ScheduleKind::kConstant);
  options.warmup_epochs(2);  // W = 20 steps: lr = 0.4 * (s + 1) / 20
  EXPECT_DOUBLE_EQ(lr_at(options, 0), 0.02);
  EXPECT_DOUBLE_EQ(lr_at(options, 9), 0.2);
  EXPECT_DOUBLE_EQ(lr_at(options, 18), 0.38);
  EXPECT_DOUBLE_EQ(lr_at(options, 19), 0.4);
  EXPECT_DOUBLE_EQ(lr_at(options, 20), 0.4);
  EXPECT_DOUBLE_EQ(lr_at(options, 99), 0.4);
}

TEST(LrScheduleTest, FractionalWarmupEpochsRoundToSteps) {
  LrScheduleOptions options = options_for(ScheduleKind::kConstant);
  options.warmup_epochs(0.5);  // W = 5 steps
  EXPECT_DOUBLE_EQ(lr_at(options, 0), 0.08);
  EXPECT_DOUBLE_EQ(lr_at(options, 4), 0.4);
}

TEST(LrScheduleTest, CosineStartsAtBaseIsHalfAtMidpointAndEndsAtZero) {
  const LrScheduleOptions options = options_for(ScheduleKind::kCosine);  // T = 100 steps
  EXPECT_DOUBLE_EQ(lr_at(options, 0), 0.4);
  EXPECT_NEAR(lr_at(options, 25), 0.4 * (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(lr_at(options, 50), 0.2, 1e-15);
  EXPECT_NEAR(lr_at(options, 75), 0.4 * (1 - std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(lr_at(options, 99), 0.4 * (1 + std::cos(M_PI * 0.99)) / 2, 1e-15);
  EXPECT_GT(lr_at(options, 99), 0.0);
  EXPECT_EQ(lr_at(options, 100), 0.0);
  EXPECT_EQ(lr_at(options, 250), 0.0);  // beyond the end stays at 0
}

TEST(LrScheduleTest, CosineDecaysOverThePostWarmupSteps) {
  LrScheduleOptions options = options_for(ScheduleKind::kCosine);
  options.warmup_epochs(2);  // W = 20, then T = 80 steps of cosine
  EXPECT_DOUBLE_EQ(lr_at(options, 19), 0.4);
  EXPECT_DOUBLE_EQ(lr_at(options, 20), 0.4);
  EXPECT_NEAR(lr_at(options, 60), 0.2, 1e-15);
  EXPECT_EQ(lr_at(options, 100), 0.0);
}

TEST(LrScheduleTest, StepMultipliesByGammaEveryStepSizeEpochs) {
  LrScheduleOptions options = options_for(ScheduleKind::kStep);
  options.steps_per_epoch(5);
  options.total_epochs(90);
  // epoch = step / 5: epochs 0-29 -> 0.4, 30-59 -> 0.04, 60-89 -> 0.004.
  EXPECT_DOUBLE_EQ(lr_at(options, 0), 0.4);
  EXPECT_DOUBLE_EQ(lr_at(options, 149), 0.4);
  EXPECT_NEAR(lr_at(options, 150), 0.04, 1e-15);
  EXPECT_NEAR(lr_at(options, 299), 0.04, 1e-15);
  EXPECT_NEAR(lr_at(options, 300), 0.004, 1e-15);
  options.step_size_epochs(2);
  options.gamma(0.5);
  EXPECT_NEAR(lr_at(options, 10), 0.2, 1e-15);      // epoch 2
  EXPECT_NEAR(lr_at(options, 39), 0.4 / 8, 1e-15);  // epoch 7 -> 3 decays
}

TEST(LrScheduleTest, StepDecayCountsEpochsFromTheStartIncludingWarmup) {
  // Goyal et al.: 5 warmup epochs, decays at epochs 30, 60, 80 counted from the start.
  LrScheduleOptions options = options_for(ScheduleKind::kStep);
  options.warmup_epochs(5);  // W = 50
  EXPECT_DOUBLE_EQ(lr_at(options, 49), 0.4);
  EXPECT_DOUBLE_EQ(lr_at(options, 299), 0.4);
  EXPECT_NEAR(lr_at(options, 300), 0.04, 1e-15);
}

TEST(LrScheduleTest, ScaledLrIsLinearInGlobalBatch) {
  EXPECT_DOUBLE_EQ(scaled_lr(0.1, 256), 0.1);
  EXPECT_DOUBLE_EQ(scaled_lr(0.1, 8192), 3.2);
  EXPECT_DOUBLE_EQ(scaled_lr(0.1, 32), 0.0125);
  EXPECT_THROW(scaled_lr(0.1, 0), Error);
}

TEST(LrScheduleTest, ParseScheduleKindAcceptsTheThreeNames) {
  EXPECT_EQ(parse_schedule_kind("constant"), ScheduleKind::kConstant);
  EXPECT_EQ(parse_schedule_kind("step"), ScheduleKind::kStep);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::kCosine);
  for (auto kind : {ScheduleKind::kConstant, ScheduleKind::kStep, ScheduleKind::kCosine}) {
    EXPECT_EQ(parse_schedule_kind(schedule_kind_name(kind)), kind);
  }
  try {
    parse_schedule_kind("linear");
    ADD_FAILURE() << "unknown schedule accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const char* name : {"linear", "constant", "step", "cosine"}) {
      EXPECT_NE(message.find(name), std::string::npos) << message;
    }
  }
}

TEST(LrScheduleTest, InvalidOptionsThrow) {
  LrScheduleOptions options = options_for(ScheduleKind::kCosine);
  EXPECT_THROW(lr_at(options, -1), Error);
  options.steps_per_epoch(0);
  EXPECT_THROW(lr_at(options, 0), Error);
  options = options_for(ScheduleKind::kCosine);
  options.warmup_epochs(10);  // no steps left for the cosine: an error even during warmup
  EXPECT_THROW(lr_at(options, 0), Error);
  options = options_for(ScheduleKind::kStep);
  options.step_size_epochs(0);
  EXPECT_THROW(lr_at(options, 0), Error);
}

}  // namespace
}  // namespace syncbn::optim
