#include "study/runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "study/results.h"
#include "syncbn/error.h"
#include "util/clock.h"
#include "util/format.h"

namespace syncbn::study {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ", lr=0.1 init=xavier": a cell's sweep setting for the progress line.
std::string sweep_words(const Cell& cell) {
  std::string words;
  for (const auto& [key, value] : cell.sweep)
    words += (words.empty() ? ", " : " ") + key + "=" + value;
  return words;
}

// Set by SIGINT/SIGTERM: the running cell's process group is stopped and the study ends; the
// cells recorded so far stay recorded.
volatile sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

// After SIGTERM, the time the job gets to end before SIGKILL.
constexpr double kTermGraceSeconds = 5.0;
constexpr std::size_t kMaxErrorChars = 300;

std::string duration_text(double seconds) {
  const auto total = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%ldh%02ldm", static_cast<long>(total / 3600),
                  static_cast<long>(total / 60 % 60));
  } else if (total >= 60) {
    std::snprintf(text, sizeof text, "%ldm%02lds", static_cast<long>(total / 60),
                  static_cast<long>(total % 60));
  } else {
    std::snprintf(text, sizeof text, "%lds", static_cast<long>(total));
  }
  return text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trimmed(std::string line) {
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  std::size_t start = 0;
  while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
  line = line.substr(start);
  if (line.size() > kMaxErrorChars) line = line.substr(0, kMaxErrorChars) + "...";
  return line;
}

struct ExitStatus {
  bool ok = false;
  std::string why;  // "exit 1", "killed by signal 9", "timed out after 30 s", "interrupted"
};

// Runs argv with stdout and stderr appended to `log` (stdin from /dev/null), in its own process
// group so that a timeout or an interrupt stops mpirun and every rank it started.
ExitStatus run_logged(const std::vector<std::string>& argv, const fs::path& log, double timeout) {
  std::vector<char*> c_argv;
  for (const std::string& word : argv) c_argv.push_back(const_cast<char*>(word.c_str()));
  c_argv.push_back(nullptr);
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  SYNCBN_CHECK(pid >= 0, "fork failed: ", std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(c_argv[0], c_argv.data());
    const std::string message =
        std::string("syncbn-study: cannot run ") + c_argv[0] + ": " + std::strerror(errno) + "\n";
    if (write(2, message.data(), message.size()) < 0) _exit(127);
    _exit(127);
  }
  setpgid(pid, pid);  // also here: whichever of parent and child runs first
  const double start = now_seconds();
  double term_sent = -1;
  std::string why;
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) SYNCBN_FAIL("waitpid failed: ", std::strerror(errno));
    const double now = now_seconds();
    if (term_sent < 0 && (interrupted || (timeout > 0 && now - start > timeout))) {
      why = interrupted ? "interrupted" : "timed out after " + shortest_repr(timeout) + " s";
      kill(-pid, SIGTERM);
      term_sent = now;
    } else if (term_sent >= 0 && now - term_sent > kTermGraceSeconds) {
      kill(-pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!why.empty()) return {false, why};
  if (WIFEXITED(status))
    return {WEXITSTATUS(status) == 0, "exit " + std::to_string(WEXITSTATUS(status))};
  return {false, "killed by signal " + std::to_string(WTERMSIG(status))};
}

std::string outcome_line(const json& row) {
  std::ostringstream line;
  if (row["status"] == "ok") {
    line << "ok";
    if (row["final_test_accuracy"].is_number())
      line << ", test accuracy " << std::fixed << std::setprecision(2)
           << 100 * row["final_test_accuracy"].get<double>() << "%";
    if (row["images_per_second"].is_number())
      line << ", " << std::llround(row["images_per_second"].get<double>()) << " img/s";
  } else {
    line << "FAILED: " << row["error"].get<std::string>();
  }
  return line.str() + " (" + duration_text(row["seconds"].get<double>()) + ")";
}

}  // namespace

std::string last_error_line(const std::string& log) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  // The log's first line is the command (written by the study), not the program's output.
  for (std::string line; std::getline(in, line);)
    if (line.rfind("$ ", 0) != 0) lines.push_back(line);
  // syncbn's programs report as "rank R: message"; then any line naming an error that is not
  // Open MPI's boilerplate about the abort; then whatever came last.
  static const std::regex rank_line(R"(^rank [0-9]+: .*)");
  for (auto line = lines.rbegin(); line != lines.rend(); ++line)
    if (std::regex_match(*line, rank_line)) return trimmed(*line);
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    std::string lower = *line;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    const bool boilerplate = lower.find("mpi_abort") != std::string::npos ||
                             lower.find("help message") != std::string::npos ||
                             lower.find("help / error") != std::string::npos;
    if (!boilerplate &&
        (lower.find("error") != std::string::npos || lower.find("cannot") != std::string::npos))
      return trimmed(*line);
  }
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    const std::string text = trimmed(*line);
    if (!text.empty() && text.find_first_not_of('-') != std::string::npos) return text;
  }
  return "";
}

int run_study(const StudySpec& spec, const RunOptions& options) {
  const fs::path dir = fs::absolute(options.out_dir);
  const Expansion expansion = expand(spec);
  for (const std::string& note : expansion.notes) std::cerr << "study: " << note << "\n";
  SYNCBN_CHECK(!expansion.cells.empty(), "spec: no cell to run (every one was left out)");

  // What DIR already holds: ok cells are skipped, unless the spec now runs them differently.
  // Every row is kept, a failed attempt too: a cell's last row is its current state.
  std::map<std::string, const Cell*> by_id;
  for (const Cell& cell : expansion.cells) by_id[cell.id] = &cell;
  const std::vector<json> old_rows = read_rows(dir.string());
  std::set<std::string> done;
  for (const json& row : old_rows) {
    const std::string id = row["cell"].get<std::string>();
    const auto cell = by_id.find(id);
    if (cell == by_id.end()) continue;
    if (row.value("status", "") != "ok") {
      done.erase(id);  // retried below, as the spec now says
      continue;
    }
    const std::string args = shell_join(cell->second->train_args);
    SYNCBN_CHECK(row.value("train_args", args) == args, (dir / "results.jsonl").string(),
                 " holds cell ", id, " run as `", row.value("train_args", ""),
                 "`; this spec runs it as `", args,
                 "`: give another --out DIR (one DIR holds one study)");
    // The report reads the cell's metrics (curves, health): a row without them is redone.
    const std::string metrics = row.value("metrics_file", "");
    if (!metrics.empty() && !fs::exists(dir / metrics)) {
      std::cerr << "study: " << id << " runs again: its metrics file " << metrics << " is gone\n";
      done.erase(id);
      continue;
    }
    done.insert(id);
  }
  // A results.csv of an older syncbn-study has other columns: it is rewritten from the rows.
  std::string csv_head;
  if (std::ifstream csv(dir / "results.csv"); csv) std::getline(csv, csv_head);
  if (!options.dry_run && !old_rows.empty() && csv_head != csv_header())
    rewrite_rows(dir.string(), old_rows);

  std::vector<const Cell*> todo;
  for (const Cell& cell : expansion.cells) {
    if (done.count(cell.id)) {
      std::cerr << "study: skipped " << cell.id << ": recorded ok in results.jsonl\n";
    } else {
      todo.push_back(&cell);
    }
  }
  const std::size_t planned =
      options.max_cells > 0 ? std::min<std::size_t>(todo.size(), options.max_cells) : todo.size();
  std::cerr << "study: " << expansion.cells.size() << " cells, " << done.size() << " recorded ok, "
            << planned << " to run now -> " << dir.string() << "\n";

  if (!options.dry_run) fs::create_directories(dir / "cells");
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  const double start = now_seconds();
  std::vector<std::string> failed;
  for (std::size_t i = 0; i < planned && !interrupted; ++i) {
    const Cell& cell = *todo[i];
    const fs::path cell_dir = dir / "cells" / cell.id;
    const fs::path metrics = cell_dir / "metrics.jsonl", log = cell_dir / "log.txt";
    std::vector<std::string> argv = {options.launcher, "-np", std::to_string(cell.ranks)};
    argv.insert(argv.end(), spec.launcher_args.begin(), spec.launcher_args.end());
    argv.push_back("--");
    argv.push_back(options.train_binary);
    argv.insert(argv.end(), cell.train_args.begin(), cell.train_args.end());
    argv.insert(argv.end(), {"--metrics", metrics.string(), "--no-progress"});
    const std::string command = shell_join(argv);
    if (options.dry_run) {
      std::cout << cell.id << ": " << command << "\n";
      continue;
    }

    const double elapsed = now_seconds() - start;
    std::string eta = "?";
    if (i > 0) eta = duration_text(elapsed / static_cast<double>(i) * (planned - i));
    std::cerr << "study: [" << i + 1 << "/" << planned << "] " << cell.id << " (" << cell.ranks
              << (cell.ranks == 1 ? " rank, batch " : " ranks, batch ") << cell.batch_per_rank
              << "/rank, " << cell.norm.name << sweep_words(cell) << ", seed " << cell.seed
              << ")  elapsed " << duration_text(elapsed) << ", ETA " << eta << std::endl;

    fs::create_directories(cell_dir);
    // syncbn-train appends to its metrics file: a retried cell starts from an empty one.
    fs::remove(metrics);
    {
      std::ofstream header(log, std::ios::trunc);
      header << "$ " << command << "\n";
    }
    const double cell_start = now_seconds();
    const ExitStatus status = run_logged(argv, log, options.timeout_per_cell);
    CellOutcome outcome;
    outcome.seconds = now_seconds() - cell_start;
    outcome.command = command;
    outcome.metrics_file = fs::relative(metrics, dir).string();
    outcome.ok = status.ok;
    if (fs::exists(metrics)) {
      try {
        std::ifstream lines(metrics);
        outcome.summary = summarize_metrics(lines, outcome.metrics_file);
      } catch (const Error& e) {
        outcome.ok = false;
        outcome.error = e.what();
      }
    } else if (outcome.ok) {
      outcome.ok = false;
      outcome.error = "exit 0 but no metrics file " + outcome.metrics_file;
    }
    if (!status.ok) {
      const std::string line = last_error_line(read_text(log));
      outcome.error = status.why + (line.empty() ? "" : ": " + line);
    }
    if (status.why == "interrupted") break;  // not recorded: the cell did not run its course
    json row = make_row(cell, spec, outcome);
    row["train_args"] = shell_join(cell.train_args);
    append_row(dir.string(), row);
    if (!outcome.ok) failed.push_back(cell.id);
    std::cerr << "study:   " << cell.id << " " << outcome_line(row) << std::endl;
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (options.dry_run) return 0;

  std::cerr << "study: " << duration_text(now_seconds() - start) << "; results in "
            << (dir / "results.csv").string() << " and results.jsonl\n";
  if (interrupted) {
    std::cerr << "study: interrupted; rerun the same command to continue\n";
    return 130;
  }
  if (planned < todo.size())
    std::cerr << "study: stopped after " << planned << " cells (--max-cells); "
              << todo.size() - planned << " left: rerun the same command to continue\n";
  if (!failed.empty()) {
    std::cerr << "study: " << failed.size() << " of " << planned << " cells failed:";
    for (const std::string& id : failed) std::cerr << " " << id;
    std::cerr << " (errors in results.csv, logs in cells/<id>/log.txt)\n";
    return 1;
  }
  return 0;
}

}  // namespace syncbn::study
