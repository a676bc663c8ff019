// The study report's health summary: which parameters count as layer weights, the gradient
// ranges, the in-range share, the first/last layer ratio in module order, BN statistics, and
// --health K lines taking precedence over the epoch lines' copies.
#include "study/health_summary.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace syncbn::study {
namespace {

namespace fs = std::filesystem;

// A --health record of an mlp with BN: Linear 1, 4, 10 (10 sorts before 4 as text), BN 2 and 5.
std::string record(double g1, double g4, double g10, double running_var) {
  char text[1024];
  std::snprintf(
      text, sizeof text,
      R"({"step":1,"parameters":{"1.weight":{"weight_norm":1,"grad_norm":%g,"grad_rms":%g},)"
      R"("1.bias":{"weight_norm":0,"grad_norm":100,"grad_rms":100},)"
      R"("2.weight":{"weight_norm":16,"grad_norm":50,"grad_rms":50},)"
      R"("4.weight":{"weight_norm":1,"grad_norm":%g,"grad_rms":%g},)"
      R"("10.weight":{"weight_norm":1,"grad_norm":%g,"grad_rms":%g}},)"
      R"("norms":{"2":{"type":"BatchNorm1d","mean_abs_running_mean":0.5,"mean_running_var":%g},)"
      R"("5":{"type":"BatchNorm1d","mean_abs_running_mean":7,"mean_running_var":1}},)"
      R"("relu_zero_fraction":{"3":0.25,"6":0.5},"flags":["5: mean |running_mean| 7"]})",
      g1, g1 / 100, g4, g4 / 100, g10, g10 / 100, running_var);
  return text;
}

class HealthSummaryTest : public ::testing::Test {
 protected:
  fs::path path = fs::temp_directory_path() /
                  ("syncbn_health_summary_" +
                   std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + ".jsonl");
  void write(const std::string& text) { std::ofstream(path) << text; }
  void TearDown() override { fs::remove(path); }
};

TEST_F(HealthSummaryTest, SummarisesLayerWeightsInModuleOrder) {
  // Two stepwise records, and an epoch line whose copy must not be counted again.
  write("{\"health_step\":100,\"epoch\":1,\"health\":" + record(2, 1, 0.5, 0.05) + "}\n" +
        "{\"health_step\":200,\"epoch\":1,\"health\":" + record(0.4, 1, 1, 2) + "}\n" +
        "{\"epoch\":1,\"train_loss\":0.5,\"health\":" + record(9, 9, 9, 9) + "}\n");
  const HealthSummary s = summarize_health(path.string());
  EXPECT_EQ(s.reports, 2);
  // Only 1.weight, 4.weight and 10.weight: not the bias (100) nor BN's gamma 2.weight (50).
  EXPECT_DOUBLE_EQ(s.grad_norm_min, 0.4);
  EXPECT_DOUBLE_EQ(s.grad_norm_max, 2);
  EXPECT_DOUBLE_EQ(s.grad_rms_min, 0.004);
  EXPECT_DOUBLE_EQ(s.grad_rms_max, 0.02);
  EXPECT_EQ(s.reports_rms_in_range, 2);
  // first = module 1, last = module 10 (not "4", the last in text order).
  ASSERT_EQ(s.first_over_last.size(), 2u);
  EXPECT_DOUBLE_EQ(s.first_over_last[0], 2 / 0.5);
  EXPECT_DOUBLE_EQ(s.first_over_last[1], 0.4 / 1);
  EXPECT_DOUBLE_EQ(s.running_mean_max, 7);
  EXPECT_DOUBLE_EQ(s.running_var_min, 0.05);
  EXPECT_DOUBLE_EQ(s.running_var_max, 2);
  EXPECT_DOUBLE_EQ(s.dead_relu_max, 0.5);
  EXPECT_EQ(s.flags, 2);

  const std::string md = health_section({{"bn · lr=0.1", s}});
  EXPECT_NE(
      md.find("| bn · lr=0.1 | 2 | 0.004 – 0.02 | 100% | 0.4 – 2 | 2.2 | 7 | 0.05 – 2 | 0.5 | 2 |"),
      std::string::npos)
      << md;
}

TEST_F(HealthSummaryTest, OutOfRangeAndNonFiniteGradientsAreNotInRange) {
  // 1e-5 RMS is below the range; a null gradient (a diverged step) is out of range and breaks
  // the ratio of its record.
  write("{\"health_step\":1,\"epoch\":1,\"health\":" + record(1e-3, 1, 1, 1) + "}\n" +
        "{\"health_step\":2,\"epoch\":1,\"health\":" +
        R"({"parameters":{"1.weight":{"grad_norm":null,"grad_rms":null},)"
        R"("3.weight":{"grad_norm":1,"grad_rms":0.01}},"norms":{},"relu_zero_fraction":{},)"
        R"("flags":[]})" +
        "}\n");
  const HealthSummary s = summarize_health(path.string());
  EXPECT_EQ(s.reports, 2);
  EXPECT_EQ(s.reports_rms_in_range, 0);
  EXPECT_EQ(s.first_over_last.size(), 1u);
  EXPECT_DOUBLE_EQ(s.grad_rms_min, 1e-5);
}

TEST_F(HealthSummaryTest, NdimDecidesWhatIsALayerWeight) {
  // A GroupNorm/LayerNorm scale has no running statistics, so it is not among "norms": "ndim"
  // (1) keeps its large gradient out; the 2-D weights count.
  write("{\"health_step\":1,\"epoch\":1,\"health\":" +
        std::string(R"({"parameters":{"1.weight":{"grad_norm":1,"grad_rms":0.01,"ndim":2},)"
                    R"("2.weight":{"grad_norm":50,"grad_rms":5,"ndim":1},)"
                    R"("4.weight":{"grad_norm":0.5,"grad_rms":0.005,"ndim":2}},)"
                    R"("norms":{},"relu_zero_fraction":{},"flags":[]})") +
        "}\n");
  const HealthSummary s = summarize_health(path.string());
  EXPECT_DOUBLE_EQ(s.grad_norm_max, 1);
  EXPECT_EQ(s.reports_rms_in_range, 1);
  ASSERT_EQ(s.first_over_last.size(), 1u);
  EXPECT_DOUBLE_EQ(s.first_over_last[0], 2);
}

TEST_F(HealthSummaryTest, EpochLinesCountWithoutStepwiseRecordsAndSeedsMerge) {
  write("{\"epoch\":1,\"train_loss\":0.5,\"health\":" + record(1, 1, 1, 1) + "}\n" +
        "{\"epoch\":2,\"train_loss\":0.4,\"health\":" + record(3, 1, 1, 1) + "}\n");
  HealthSummary a = summarize_health(path.string());
  EXPECT_EQ(a.reports, 2);
  const HealthSummary none = summarize_health((path.string() + ".missing"));
  EXPECT_EQ(none.reports, 0);
  EXPECT_EQ(health_section({{"x", none}}), "");
  merge_health(a, summarize_health(path.string()));
  EXPECT_EQ(a.reports, 4);
  EXPECT_EQ(a.first_over_last.size(), 4u);
  EXPECT_DOUBLE_EQ(a.grad_norm_max, 3);
}

TEST_F(HealthSummaryTest, ALineThatIsNotJsonIsNamed) {
  write("{\"epoch\":1}\nnot json\n");
  try {
    summarize_health(path.string());
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("line 2 is not JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace syncbn::study
