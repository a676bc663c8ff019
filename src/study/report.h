#pragma once
// syncbn-study report DIR: DIR/report.md (test error per axis as mean ± std over seeds,
// throughput and SyncBN's cost against local BN, time per step by component; with sweep axes or
// diverged runs, accuracy and divergence per setting) and PNG figures drawn by gnuplot from data
// and scripts kept next to them in DIR/figures/ (*.dat, *.gp): error vs batch, throughput and
// efficiency vs ranks, time per step, test accuracy per epoch and, from the cells' --health
// reports, the gradient norm per layer. A setting is a norm with the values of the study's sweep
// axes (row key "sweep"): settings are never averaged together.
#include <cstdint>
#include <string>
#include <vector>

namespace syncbn::study {

struct MeanStd {
  double mean = 0;
  double std = 0;  // sample standard deviation (n - 1 in the denominator); 0 for one value
  int64_t n = 0;
};
MeanStd mean_std(const std::vector<double>& values);
// "12.34 ± 0.56" (one value: "12.34"), `decimals` after the point.
std::string format_mean_std(const MeanStd& value, int decimals);

struct ReportOutcome {
  std::string report_path;
  std::vector<std::string> figures;  // PNG paths written
  std::string warning;               // e.g. gnuplot missing: figures not drawn
};

// Reads DIR/results.jsonl (the last row of each cell counts) and writes the report; throws when
// there is no results file or gnuplot fails on a script.
ReportOutcome write_report(const std::string& dir);

}  // namespace syncbn::study
