// The report's statistics: mean and sample standard deviation over seeds, and their text.
#include "study/report.h"

#include <gtest/gtest.h>

#include <cmath>

namespace syncbn::study {
namespace {

TEST(StudyReportTest, MeanAndSampleStandardDeviation) {
  // mean 2.5; sum of squares 2.25 + 0.25 + 0.25 + 2.25 = 5, / (n - 1) = 5/3
  const MeanStd value = mean_std({1, 2, 3, 4});
  EXPECT_EQ(value.n, 4);
  EXPECT_DOUBLE_EQ(value.mean, 2.5);
  EXPECT_NEAR(value.std, std::sqrt(5.0 / 3.0), 1e-12);
}

TEST(StudyReportTest, OneValueHasNoSpreadAndNoneHasNoMean) {
  EXPECT_DOUBLE_EQ(mean_std({7.5}).std, 0.0);
  EXPECT_EQ(mean_std({}).n, 0);
}

TEST(StudyReportTest, MeanStdTextOmitsTheSpreadOfOneValue) {
  EXPECT_EQ(format_mean_std(mean_std({1, 2, 3, 4}), 2), "2.50 ± 1.29");
  EXPECT_EQ(format_mean_std(mean_std({12.345}), 1), "12.3");
}

}  // namespace
}  // namespace syncbn::study
