#pragma once
// The study's results: one row per finished cell, in DIR/results.jsonl (one JSON object per
// line; the contract of record, read by other tools) and DIR/results.csv (the same scalar
// columns, nested objects flattened: time_per_step.forward -> time_forward). Rows are appended
// and flushed as each cell ends, so an interrupted study keeps what it finished.
#include <istream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "study/spec.h"

namespace syncbn::study {

// The components of the contract's nested per-step objects.
extern const std::vector<std::string> kTimeParts;     // data, forward, ..., other
extern const std::vector<std::string> kTrafficParts;  // syncbn_allreduce, grad_allreduce, other

// What a run's metrics lines (syncbn-train --metrics, one JSON object per epoch) say about it:
// final_test_accuracy, best_test_accuracy, final_test_loss, images_per_second (last epoch),
// steps, time_per_step / bytes_per_step / collectives_per_step (totals over the epochs divided
// by the steps), diverged_at_step when present. Keys an older syncbn-train does not write come
// out null; a line that is not JSON throws naming its number.
nlohmann::json summarize_metrics(std::istream& lines, const std::string& name);

struct CellOutcome {
  bool ok = false;
  std::string error;         // failed: the reason (the log's last error line)
  double seconds = 0;        // wall time of the whole run
  std::string command;       // the exact command line, quoted for a shell
  std::string metrics_file;  // relative to the study directory
  nlohmann::json summary;    // summarize_metrics's output (may be partial or empty)
};

nlohmann::json make_row(const Cell& cell, const StudySpec& spec, const CellOutcome& outcome);

// A row's sweep setting (its "sweep" object) as "key=value key=value", keys sorted as nlohmann
// keeps them; "" for no sweep axes.
std::string sweep_text(const nlohmann::json& sweep);

std::vector<std::string> csv_columns();
// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
std::string csv_escape(const std::string& field);
std::string csv_header();
std::string csv_line(const nlohmann::json& row);

// The rows of DIR/results.jsonl (none when it does not exist); a malformed line throws naming
// the file and line.
std::vector<nlohmann::json> read_rows(const std::string& dir);
// Appends one row to both files (a header first into a new CSV) and flushes them.
void append_row(const std::string& dir, const nlohmann::json& row);
// Replaces both files by `rows` (write, then rename, so a crash leaves the old or the new).
void rewrite_rows(const std::string& dir, const std::vector<nlohmann::json>& rows);

// `word` quoted for a POSIX shell where it needs it (bare when made of safe characters).
std::string shell_quote(const std::string& word);
std::string shell_join(const std::vector<std::string>& words);

}  // namespace syncbn::study
