#pragma once
// Runs a study's cells one after another, each as `syncbn-run -np P -- syncbn-train ...`, and
// records each finished cell at once (study/results.h). A rerun skips the cells recorded ok.
#include <string>

#include "study/spec.h"

namespace syncbn::study {

struct RunOptions {
  std::string out_dir;          // DIR: cells/<id>/{log.txt,metrics.jsonl}, results.{csv,jsonl}
  std::string train_binary;     // syncbn-train
  std::string launcher;         // syncbn-run
  double timeout_per_cell = 0;  // seconds; 0 = none
  int64_t max_cells = 0;        // run at most this many cells now (0 = all): the rest later
  bool dry_run = false;         // print each cell's command, run nothing
};

// The last line of `log` that reads as an error ("error", "rank R:", "what()", "Abort"...), or
// its last non-empty line; "" for an empty log.
std::string last_error_line(const std::string& log);

// Returns the exit status of the study: 0 when every cell it ran or found is ok (or dry run),
// 1 when any failed, 130 when interrupted.
int run_study(const StudySpec& spec, const RunOptions& options);

}  // namespace syncbn::study
