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

}  // namespace
}  // namespace syncbn::train
