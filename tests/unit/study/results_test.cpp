// The study's result rows: a run's metrics lines summarised (with and without the timing keys),
// rows flattened to CSV with RFC 4180 quoting, the error line picked out of a job's log.
#include "study/results.h"

#include <gtest/gtest.h>

#include <sstream>

#include "study/runner.h"
#include "syncbn/error.h"

namespace syncbn::study {
namespace {

using nlohmann::json;

TEST(StudyResultsTest, CsvFieldsWithCommasQuotesOrNewlinesAreQuoted) {
  EXPECT_EQ(csv_escape("plain"), "plain");
  EXPECT_EQ(csv_escape("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_escape("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_escape(""), "");
}

TEST(StudyResultsTest, MetricsWithoutTimingKeysGiveNullsPerStep) {
  std::istringstream lines(
      R"({"epoch":1,"step":10,"test_accuracy":0.5,"test_loss":1.5,"images_per_second":100})"
      "\n"
      R"({"epoch":2,"step":20,"test_accuracy":0.4,"test_loss":1.7,"images_per_second":120})"
      "\n");
  const json summary = summarize_metrics(lines, "m");
  EXPECT_DOUBLE_EQ(summary["final_test_accuracy"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(summary["best_test_accuracy"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(summary["final_test_loss"].get<double>(), 1.7);
  EXPECT_DOUBLE_EQ(summary["images_per_second"].get<double>(), 120);
  EXPECT_EQ(summary["steps"].get<int64_t>(), 20);
  EXPECT_TRUE(summary["time_per_step"]["forward"].is_null());
  EXPECT_TRUE(summary["bytes_per_step"]["grad_allreduce"].is_null());
}

TEST(StudyResultsTest, TimingKeysAreTotalledOverEpochsAndDividedBySteps) {
  // 10 + 30 steps; forward 1 s + 3 s -> 0.1 s per step; bytes 1000 + 3000 -> 100 per step.
  std::istringstream lines(R"({"step":10,"steps_in_epoch":10,"time":{"forward":1.0,"data":0.5},)"
                           R"("bytes":{"grad_allreduce":1000},"collectives":{"grad_allreduce":20}})"
                           "\n"
                           R"({"step":40,"steps_in_epoch":30,"time":{"forward":3.0,"data":1.5},)"
                           R"("bytes":{"grad_allreduce":3000},"collectives":{"grad_allreduce":60}})"
                           "\n");
  const json summary = summarize_metrics(lines, "m");
  EXPECT_DOUBLE_EQ(summary["time_per_step"]["forward"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(summary["time_per_step"]["data"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(summary["time_per_step"]["optimizer"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(summary["bytes_per_step"]["grad_allreduce"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(summary["collectives_per_step"]["grad_allreduce"].get<double>(), 2);
  EXPECT_TRUE(summary["final_test_accuracy"].is_null());
}

TEST(StudyResultsTest, AMetricsLineThatIsNotJsonIsNamed) {
  std::istringstream lines("{\"step\":1}\n{broken\n");
  try {
    summarize_metrics(lines, "cells/x/metrics.jsonl");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cells/x/metrics.jsonl line 2 is not JSON"),
              std::string::npos);
  }
}

TEST(StudyResultsTest, CsvLinesFlattenNestedObjectsInHeaderOrder) {
  const json row = {{"cell", "np2-b4-bn-s0"},
                    {"status", "failed"},
                    {"error", "exit 1: rank 0: bad, really"},
                    {"lr", 0.05},
                    {"time_per_step", {{"forward", 0.25}, {"data", nullptr}}}};
  const std::vector<std::string> columns = csv_columns();
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  for (const char c : csv_line(row)) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  fields.push_back(field);
  ASSERT_EQ(fields.size(), columns.size());
  const auto at = [&](const std::string& name) {
    return fields[std::find(columns.begin(), columns.end(), name) - columns.begin()];
  };
  EXPECT_EQ(at("cell"), "np2-b4-bn-s0");
  EXPECT_EQ(at("lr"), "0.05");
  EXPECT_EQ(at("time_forward"), "0.25");
  EXPECT_EQ(at("time_data"), "");
  EXPECT_EQ(at("error"), "exit 1: rank 0: bad, really");
}

TEST(StudyResultsTest, ShellQuotingLeavesSafeWordsBare) {
  EXPECT_EQ(shell_join({"syncbn-run", "-np", "2", "--", "a b", "it's"}),
            "syncbn-run -np 2 -- 'a b' 'it'\\''s'");
}

TEST(StudyResultsTest, TheErrorLineIsTheRankMessageNotOpenMpiBoilerplate) {
  const std::string log =
      "$ syncbn-run -np 2 -- syncbn-train --error-in-the-command\n"
      "rank 1: --sync-group-size 3 does not divide the number of ranks 2\n"
      "----------\n"
      "MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\n"
      "with errorcode 1.\n"
      "[vm:1] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error "
      "messages\n";
  EXPECT_EQ(last_error_line(log),
            "rank 1: --sync-group-size 3 does not divide the number of ranks 2");
  EXPECT_EQ(last_error_line("$ cmd\nstarting\nError: no such file\ndone\n"), "Error: no such file");
  EXPECT_EQ(last_error_line("$ cmd\nsegmentation fault\n\n"), "segmentation fault");
  EXPECT_EQ(last_error_line(""), "");
}

}  // namespace
}  // namespace syncbn::study
