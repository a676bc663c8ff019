// The report's statistics (mean and sample standard deviation over seeds, and their text), and
// what it makes of a study with sweep axes and diverged runs: one row and one line per setting.
#include "study/report.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "syncbn/error.h"

namespace syncbn::study {
namespace {

namespace fs = std::filesystem;

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

// A study directory written by hand: results rows and the cells' metrics lines.
class StudyDir {
 public:
  StudyDir() {
    std::string pattern = (fs::temp_directory_path() / "syncbn-report-test.XXXXXX").string();
    SYNCBN_CHECK(mkdtemp(pattern.data()) != nullptr, "mkdtemp failed");
    path_ = pattern;
  }
  ~StudyDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::vector<nlohmann::json>& lines) const {
    fs::create_directories((path_ / name).parent_path());
    std::ofstream out(path_ / name);
    for (const nlohmann::json& line : lines) out << line.dump() << "\n";
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path_ / name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  fs::path path_;
};

nlohmann::json row(const std::string& cell, int64_t seed, const std::string& lr,
                   nlohmann::json final_accuracy, nlohmann::json best_accuracy,
                   nlohmann::json diverged_at_step) {
  return {{"cell", cell},
          {"status", "ok"},
          {"ranks", 1},
          {"batch_per_rank", 32},
          {"global_batch", 32},
          {"norm", "bn"},
          {"seed", seed},
          {"mode", "weak"},
          {"lr", std::stod(lr)},
          {"model", "mlp"},
          {"final_test_accuracy", final_accuracy},
          {"best_test_accuracy", best_accuracy},
          {"images_per_second", 1000.0},
          {"diverged_at_step", diverged_at_step},
          {"metrics_file", "cells/" + cell + "/metrics.jsonl"},
          {"sweep", {{"lr", lr}}}};
}

nlohmann::json epoch(int64_t number, nlohmann::json test_accuracy, nlohmann::json train_loss) {
  return {{"epoch", number},
          {"step", 10 * number},
          {"train_loss", train_loss},
          {"test_accuracy", test_accuracy}};
}

// A health report of the BN MLP: Linear 1 and 4, BatchNorm 2 (whose weight is gamma).
nlohmann::json health(int64_t step, nlohmann::json first_grad_norm) {
  const auto parameter = [](nlohmann::json grad_norm) {
    return nlohmann::json{{"weight_norm", 1.0}, {"grad_norm", grad_norm}, {"grad_rms", 0.01}};
  };
  return {{"step", step},
          {"parameters",
           {{"1.weight", parameter(first_grad_norm)},
            {"1.bias", parameter(0.5)},
            {"2.weight", parameter(0.25)},
            {"2.bias", parameter(0.25)},
            {"4.weight", parameter(0.125)}}},
          {"norms", {{"2", {{"type", "BatchNorm1d"}}}}},
          {"relu_zero_fraction", {{"3", 0.5}}},
          {"flags", nlohmann::json::array()}};
}

std::size_t count_lines(const std::string& text, const std::string& prefix) {
  std::size_t count = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) count += line.rfind(prefix, 0) == 0;
  return count;
}

bool is_png(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, sizeof head);
  return in.good() && std::string(head, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

// Two learning rates of a sweep, two seeds each; one seed of lr=10 diverges at step 7. The lr=0.1
// seed 0 has health lines every 5 steps; the lr=10 seed 0 has its health in the epoch lines.
TEST(StudyReportTest, SweepSettingsAreReportedApartWithDivergenceAndCurves) {
  const StudyDir study;
  study.write("results.jsonl",
              {row("a", 0, "0.1", 0.90, 0.91, nullptr), row("b", 1, "0.1", 0.92, 0.93, nullptr),
               row("c", 0, "10", 0.50, 0.55, nullptr), row("d", 1, "10", nullptr, 0.30, 7)});
  study.write("cells/a/metrics.jsonl",
              {{{"health_step", 5}, {"epoch", 1}, {"health", health(5, 2.0)}},
               epoch(1, 0.80, 0.5),
               {{"health_step", 15}, {"epoch", 2}, {"health", health(15, 1.0)}},
               epoch(2, 0.90, 0.3)});
  study.write("cells/b/metrics.jsonl", {epoch(1, 0.82, 0.4), epoch(2, 0.92, 0.2)});
  nlohmann::json c1 = epoch(1, 0.55, 1.5), c2 = epoch(2, 0.50, 1.4);
  c1["health"] = health(10, nullptr);  // a non-finite norm, written as null, is left out
  c2["health"] = health(20, 1e30);
  study.write("cells/c/metrics.jsonl", {c1, c2});
  nlohmann::json d2 = epoch(2, nullptr, nullptr);
  d2["diverged_at_step"] = 7;
  study.write("cells/d/metrics.jsonl", {epoch(1, 0.30, 2.0), d2});

  const ReportOutcome outcome = write_report(study.path().string());
  const std::string report = study.read("report.md");
  // Each setting is its own column: 100 - 91 and 100 - 50 (never their average, 29.5).
  EXPECT_NE(report.find("| batch/rank | bn · lr=0.1 | bn · lr=10 |\n"), std::string::npos);
  EXPECT_NE(report.find("| 32 | **9.00 ± 1.41** | 50.00 |\n"), std::string::npos) << report;
  EXPECT_NE(report.find("## Accuracy and divergence by setting"), std::string::npos);
  EXPECT_NE(report.find("| norm | lr | runs | diverged | test accuracy after epoch 1 (%) | "
                        "final test accuracy (%) | best test accuracy (%) | final train loss |\n"),
            std::string::npos)
      << report;
  // mean 91, s = sqrt(((90 - 91)^2 + (92 - 91)^2) / 1) = 1.41; losses 0.3, 0.2: s = 0.0707.
  EXPECT_NE(report.find("| bn | 0.1 | 2 | 0/2 | 81.00 ± 1.41 | 91.00 ± 1.41 | 92.00 ± 1.41 | "
                        "0.2500 ± 0.0707 |\n"),
            std::string::npos)
      << report;
  // Only the seed that did not diverge counts.
  EXPECT_NE(report.find("| bn | 10 | 2 | 1/2 (step 7) | 55.00 | 50.00 | 55.00 | 1.4000 |\n"),
            std::string::npos)
      << report;
  // The health section: one row per setting, the seeds of a setting together.
  EXPECT_NE(report.find("## Health over training"), std::string::npos);
  EXPECT_NE(report.find("| bn · lr=0.1 | 2 | "), std::string::npos) << report;
  EXPECT_NE(report.find("| bn · lr=10 | 2 | "), std::string::npos) << report;
  EXPECT_NE(report.find("figures/test-accuracy-per-epoch.png"), std::string::npos);
  EXPECT_NE(report.find("figures/grad-norm-per-layer.png"), std::string::npos);

  // One block per setting; epoch 2 of lr=10 is the mean of the one seed left.
  const std::string accuracy = study.read("figures/test-accuracy-per-epoch.dat");
  EXPECT_EQ(count_lines(accuracy, "# "), 2u) << accuracy;
  EXPECT_EQ(accuracy,
            "# bn · lr=0.1: epoch, test accuracy % mean, seeds\n1 81.0000 2\n2 91.0000 2\n\n\n"
            "# bn · lr=10: epoch, test accuracy % mean, seeds\n1 42.5000 2\n2 50.0000 1\n\n\n");
  // One block per Linear weight per setting (gamma, 2.weight, is a norm parameter).
  const std::string gradients = study.read("figures/grad-norm-per-layer.dat");
  EXPECT_EQ(count_lines(gradients, "# "), 4u) << gradients;
  EXPECT_EQ(gradients.find("2.weight"), std::string::npos) << gradients;
  EXPECT_EQ(gradients,
            "# bn · lr=0.1 (seed 0), 1.weight: step, gradient norm\n5 2\n15 1\n\n\n"
            "# bn · lr=0.1 (seed 0), 4.weight: step, gradient norm\n5 0.125\n15 0.125\n\n\n"
            "# bn · lr=10 (seed 0), 1.weight: step, gradient norm\n20 1e+30\n\n\n"
            "# bn · lr=10 (seed 0), 4.weight: step, gradient norm\n10 0.125\n20 0.125\n\n\n");
  const std::string script = study.read("figures/grad-norm-per-layer.gp");
  EXPECT_NE(script.find("set multiplot layout 1,2"), std::string::npos) << script;
  EXPECT_EQ(count_lines(script, "plot "), 2u) << script;

  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    EXPECT_TRUE(outcome.figures.empty());
    GTEST_SKIP() << "no gnuplot: PNGs not checked";
  }
  for (const char* name : {"test-accuracy-per-epoch", "grad-norm-per-layer"}) {
    const fs::path png = study.path() / "figures" / (std::string(name) + ".png");
    EXPECT_TRUE(is_png(png)) << png;
    EXPECT_NE(std::find(outcome.figures.begin(), outcome.figures.end(), png.string()),
              outcome.figures.end())
        << name;
  }
}

// Without a sweep or a divergence the report is as before: plain norm labels, no new section, and
// no per-epoch figure for one-epoch runs.
TEST(StudyReportTest, StudyWithoutSweepOrDivergenceKeepsItsLabels) {
  const StudyDir study;
  nlohmann::json plain = row("a", 0, "0.1", 0.9, 0.9, nullptr);
  plain.erase("sweep");
  study.write("results.jsonl", {plain});
  study.write("cells/a/metrics.jsonl", {epoch(1, 0.9, 0.3)});
  write_report(study.path().string());
  const std::string report = study.read("report.md");
  EXPECT_NE(report.find("| batch/rank | bn |\n"), std::string::npos) << report;
  EXPECT_EQ(report.find("## Accuracy and divergence"), std::string::npos) << report;
  EXPECT_FALSE(fs::exists(study.path() / "figures" / "test-accuracy-per-epoch.dat"));
  EXPECT_FALSE(fs::exists(study.path() / "figures" / "grad-norm-per-layer.dat"));
}

}  // namespace
}  // namespace syncbn::study
