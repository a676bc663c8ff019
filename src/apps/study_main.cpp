// syncbn-study: scaling studies over syncbn-train. `run SPEC --out DIR` trains every cell of
// ranks x batch x norm x seed under syncbn-run and records one row per cell as it ends (a rerun
// continues where the last one stopped); `report DIR` writes DIR/report.md and its figures.
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "study/report.h"
#include "study/runner.h"
#include "study/spec.h"
#include "syncbn/error.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

constexpr const char* kUsage =
    "usage: syncbn-study run SPEC --out DIR [--dry-run] [--max-cells N] [--timeout-per-cell S]\n"
    "                        [--build DIR] [--syncbn-run PATH] [--KEY VALUE...] [-- TRAIN-ARGS]\n"
    "       syncbn-study report DIR\n\n"
    "SPEC is a file of `key = value` lines (examples/studies/*.cfg); --KEY VALUE overrides a\n"
    "key; TRAIN-ARGS after -- go to every cell's syncbn-train.\n";

// The programs the study runs: syncbn-train in the build directory (the one this program is in,
// or --build), syncbn-run next to this program or in the source tree it was built from.
fs::path this_program_dir() { return fs::canonical("/proc/self/exe").parent_path(); }

std::string find_train(const std::string& build) {
  const fs::path path = (build.empty() ? this_program_dir() : fs::path(build)) / "syncbn-train";
  SYNCBN_CHECK(fs::exists(path), "no syncbn-train at ", path.string(),
               " (build it, or give --build DIR)");
  return fs::absolute(path).string();
}

std::string find_launcher(const std::string& given) {
  if (!given.empty()) {
    SYNCBN_CHECK(fs::exists(given), "--syncbn-run ", given, ": no such file");
    return fs::absolute(given).string();
  }
  const std::vector<fs::path> candidates = {this_program_dir() / "syncbn-run",
                                            fs::path(SYNCBN_SOURCE_DIR) / "launch" / "syncbn-run"};
  for (const fs::path& path : candidates)
    if (fs::exists(path)) return path.string();
  SYNCBN_FAIL("syncbn-run not found at ", candidates[0].string(), " or ", candidates[1].string(),
              " (give --syncbn-run PATH)");
}

std::string read_spec_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  SYNCBN_CHECK(fs::is_regular_file(path) && file.good(), "cannot open spec file '", path, "'");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

int run_command(const std::vector<std::string>& args) {
  std::vector<std::string> before = args, after;
  const auto dashes = std::find(before.begin(), before.end(), "--");
  if (dashes != before.end()) {
    after.assign(dashes + 1, before.end());
    before.erase(dashes, before.end());
  }
  syncbn::study::RunOptions options;
  std::string spec_file, build, launcher;
  po::options_description run_options("syncbn-study run options");
  // clang-format off
  run_options.add_options()
    ("help,h", "show this help and exit")
    ("spec", po::value(&spec_file), "the study's spec file (positional)")
    ("out", po::value(&options.out_dir), "the study directory DIR (created; a rerun continues it)")
    ("dry-run", po::bool_switch(&options.dry_run), "print each cell's command, run nothing")
    ("max-cells", po::value(&options.max_cells)->default_value(0), "run at most N cells now (0 = all); rerun for the rest")
    ("timeout-per-cell", po::value(&options.timeout_per_cell)->default_value(0), "stop a cell after S seconds and record it failed (0 = no limit)")
    ("build", po::value(&build), "the build directory holding syncbn-train (default: this program's)")
    ("syncbn-run", po::value(&launcher), "the launcher (default: next to this program, else launch/syncbn-run of its source tree)");
  // clang-format on
  po::options_description spec_keys = syncbn::study::spec_options();
  po::options_description all;
  all.add(run_options).add(spec_keys);
  po::positional_options_description positional;
  positional.add("spec", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(before).options(all).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << kUsage << "\n" << run_options << "\n" << spec_keys << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL(e.what(), " (see syncbn-study run --help)");
  }
  SYNCBN_CHECK(!spec_file.empty(), "run: SPEC is missing (see syncbn-study run --help)");
  SYNCBN_CHECK(!options.out_dir.empty(), "run: --out DIR is missing");
  SYNCBN_CHECK(options.max_cells >= 0, "--max-cells must be >= 0, got ", options.max_cells);
  SYNCBN_CHECK(options.timeout_per_cell >= 0, "--timeout-per-cell must be >= 0 seconds, got ",
               options.timeout_per_cell);
  syncbn::study::store_spec_file(read_spec_file(spec_file), spec_file, spec_keys, vm);
  const syncbn::study::StudySpec spec = syncbn::study::spec_from(vm, after);
  options.train_binary = find_train(build);
  options.launcher = find_launcher(launcher);
  return syncbn::study::run_study(spec, options);
}

int report_command(const std::vector<std::string>& args) {
  if (args.size() == 1 && (args[0] == "-h" || args[0] == "--help")) {
    std::cout << kUsage;
    return 0;
  }
  SYNCBN_CHECK(args.size() == 1, "report takes one argument, the study directory DIR");
  SYNCBN_CHECK(fs::is_directory(args[0]), "report: ", args[0], " is not a directory");
  const syncbn::study::ReportOutcome outcome = syncbn::study::write_report(args[0]);
  if (!outcome.warning.empty()) std::cerr << "syncbn-study: warning: " << outcome.warning << "\n";
  std::cerr << "syncbn-study: wrote " << outcome.report_path << " and " << outcome.figures.size()
            << " figures\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
      (args.empty() ? std::cerr : std::cout) << kUsage;
      return args.empty() ? 2 : 0;
    }
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    if (args[0] == "run") return run_command(rest);
    if (args[0] == "report") return report_command(rest);
    std::cerr << "syncbn-study: unknown command '" << args[0] << "' (run or report)\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "syncbn-study: " << e.what() << "\n";
    return 2;
  }
}
