// TrainConfig::validate: every numeric setting is range-checked by the library, with a message
// that names the flag, the value and the allowed range.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "syncbn/error.h"
#include "syncbn/train/trainer.h"

namespace syncbn::train {
namespace {

void expect_invalid(const std::function<void(TrainConfig&)>& change, const std::string& part) {
  TrainConfig config;
  change(config);
  try {
    config.validate();
    ADD_FAILURE() << "expected an error mentioning " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(TrainConfigTest, DefaultsAreValid) { EXPECT_NO_THROW(TrainConfig().validate()); }

TEST(TrainConfigTest, CountsOutsideTheirRangeNameFlagValueAndRange) {
  expect_invalid([](TrainConfig& c) { c.batch_size = 0; },
                 "--batch-size must be an integer in 1..1073741824, got 0");
  expect_invalid([](TrainConfig& c) { c.epochs = -3; }, "--epochs must be an integer in 1..");
  expect_invalid([](TrainConfig& c) { c.steps = -1; }, "--steps must be an integer in 0..");
  expect_invalid([](TrainConfig& c) { c.eval_batch_size = 0; }, "--eval-batch-size");
  expect_invalid([](TrainConfig& c) { c.sync_group_size = -2; }, "--sync-group-size");
  expect_invalid([](TrainConfig& c) { c.synthetic_samples = 0; }, "--synthetic-samples");
  expect_invalid([](TrainConfig& c) { c.synthetic_classes = 1; }, "--synthetic-classes");
  expect_invalid([](TrainConfig& c) { c.bucket_kib = int64_t{1} << 60; }, "--bucket-kib");
  expect_invalid([](TrainConfig& c) { c.timeline_steps = 0; }, "--timeline-steps");
  expect_invalid([](TrainConfig& c) { c.timeline_start = -1; }, "--timeline-start");
}

TEST(TrainConfigTest, ATimelineNeedsTiming) {
  expect_invalid(
      [](TrainConfig& c) {
        c.timeline = "trace.json";
        c.timing = false;
      },
      "--timeline needs the timing that --no-timing turns off");
}

TEST(TrainConfigTest, RealsMustBeFiniteAndInRange) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_invalid([&](TrainConfig& c) { c.lr = nan; }, "--lr must be a finite number");
  expect_invalid([](TrainConfig& c) { c.lr = -1; }, "--lr");
  expect_invalid([](TrainConfig& c) { c.momentum = 1.5; },
                 "--momentum must be a finite number in [0, 1], got 1.5");
  expect_invalid([](TrainConfig& c) { c.weight_decay = -1e-4; }, "--weight-decay");
  expect_invalid([](TrainConfig& c) { c.warmup_epochs = INFINITY; }, "--warmup-epochs");
}

TEST(TrainConfigTest, BatchNormExperimentFlagsAreCheckedAndAgreedOn) {
  expect_invalid([](TrainConfig& c) { c.norm_placement = "after"; }, "unknown --norm-placement");
  expect_invalid([](TrainConfig& c) { c.dropout_placement = "x"; }, "unknown --dropout-placement");
  expect_invalid([](TrainConfig& c) { c.dropout = 1.0; }, "--dropout must be a finite number");
  expect_invalid([](TrainConfig& c) { c.dropout = -0.1; }, "--dropout");
  expect_invalid([](TrainConfig& c) { c.on_divergence = "ignore"; }, "unknown --on-divergence");
  expect_invalid([](TrainConfig& c) { c.health = -2; }, "--health must be an integer in -1..");
  expect_invalid([](TrainConfig& c) { c.init = "constant:x"; }, "constant:V needs a finite number");
  TrainConfig c;
  c.init = "constant:10";
  c.dropout = 0.5;
  c.on_divergence = "record";
  c.health = 0;
  EXPECT_NO_THROW(c.validate());
  std::string keys;
  for (const auto& [key, value] : c.settings()) keys += key + "=" + value + " ";
  for (const char* part : {"init=constant:10 ", "norm-placement=before-act ", "dropout=0.5 ",
                           "dropout-placement=after-act ", "on-divergence=record ", "health=0 "}) {
    EXPECT_NE(keys.find(part), std::string::npos) << part << " not in " << keys;
  }
}

TEST(TrainConfigTest, SyntheticShapeProductsMustFit) {
  expect_invalid([](TrainConfig& c) { c.synthetic_shape = {1, 0, 28}; }, "--synthetic-shape");
  expect_invalid(
      [](TrainConfig& c) {
        c.synthetic_shape = {4294967296, 4294967296, 4};
      },
      "overflows a 64-bit size");
  expect_invalid(
      [](TrainConfig& c) {
        c.synthetic_samples = int64_t{1} << 40;
        c.synthetic_shape = {1 << 10, 1 << 10, 1 << 10};
      },
      "--synthetic-samples x C x H x W");
}

TEST(TrainConfigTest, LongNamesAreQuotedBriefly) {
  TrainConfig config;
  config.model = std::string(5000, 'm');
  try {
    config.validate();
    FAIL() << "expected a syncbn::Error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 300u) << e.what();
  }
  config = TrainConfig();
  config.norm = std::string(5000, 'n');
  EXPECT_THROW(config.validate(), Error);
}

}  // namespace
}  // namespace syncbn::train
