#include "syncbn/train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace syncbn::train {
namespace {

TEST(MetricsTest, NonFiniteValuesAreWrittenAsJsonNullNeverAsNanLiterals) {
  EpochMetrics m;
  m.epoch = 1;
  m.step = 5;
  m.train_loss = std::numeric_limits<double>::quiet_NaN();
  m.test_loss = -std::numeric_limits<double>::quiet_NaN();
  m.images_per_second = std::numeric_limits<double>::infinity();
  const std::string line = to_json(m);
  EXPECT_EQ(line.find("nan"), std::string::npos) << line;
  EXPECT_EQ(line.find("inf"), std::string::npos) << line;
  // A strict parser reads the line back; the non-finite fields are null.
  const nlohmann::json row = nlohmann::json::parse(line);
  EXPECT_TRUE(row["train_loss"].is_null());
  EXPECT_TRUE(row["test_loss"].is_null());
  EXPECT_TRUE(row["images_per_second"].is_null());
  EXPECT_EQ(row["step"], 5);
}

TEST(MetricsTest, DivergedStepAndHealthAreWrittenOnlyWhenSet) {
  EpochMetrics m;
  const nlohmann::json plain = nlohmann::json::parse(to_json(m));
  EXPECT_FALSE(plain.contains("diverged_at_step"));
  EXPECT_FALSE(plain.contains("health"));
  m.diverged_at_step = 4;
  m.health = R"({"step":3,"flags":["1.weight: x"]})";
  const nlohmann::json row = nlohmann::json::parse(to_json(m));
  EXPECT_EQ(row["diverged_at_step"], 4);
  EXPECT_EQ(row["health"]["step"], 3);
  EXPECT_EQ(row["health"]["flags"][0], "1.weight: x");
  EXPECT_EQ(row["epoch"], 0);  // the existing keys stay
}

TEST(MetricsTest, TimingKeysAreWrittenOnlyWhenMeasured) {
  EpochMetrics m;
  m.steps_in_epoch = 7;
  const nlohmann::json plain = nlohmann::json::parse(to_json(m));
  EXPECT_EQ(plain["steps_in_epoch"], 7);
  EXPECT_FALSE(plain.contains("time"));
  EXPECT_FALSE(plain.contains("bytes"));

  m.has_timing = true;
  m.time.data = 0.5;
  m.time.grad_comm_exposed = 0.25;
  m.time.other = 0.125;
  m.bytes = {1000, 2000, 3};
  m.collectives = {4, 2, 1};
  const nlohmann::json row = nlohmann::json::parse(to_json(m));
  for (const char* key : {"data", "forward", "backward", "syncbn_comm", "grad_comm_exposed",
                          "optimizer", "eval", "other"}) {
    EXPECT_TRUE(row["time"].contains(key)) << key;
  }
  EXPECT_EQ(row["time"]["data"], 0.5);
  EXPECT_EQ(row["time"]["grad_comm_exposed"], 0.25);
  EXPECT_EQ(row["time"]["other"], 0.125);
  EXPECT_EQ(row["bytes"]["syncbn_allreduce"], 1000);
  EXPECT_EQ(row["bytes"]["grad_allreduce"], 2000);
  EXPECT_EQ(row["bytes"]["other"], 3);
  EXPECT_EQ(row["collectives"]["syncbn_allreduce"], 4);
  EXPECT_EQ(row["collectives"]["grad_allreduce"], 2);
  EXPECT_EQ(row["collectives"]["other"], 1);
}

}  // namespace
}  // namespace syncbn::train
