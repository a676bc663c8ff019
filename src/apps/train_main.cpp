// syncbn-train: data-parallel training with synchronised batch norm, on one process or under
// mpirun / srun. Flags come from the command line and, optionally, a --config file in
// Boost.Program_options' format (key = value); the command line wins.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/threads.h"
#include "syncbn/train/trainer.h"
#include "train/train_options.h"
#include "util/format.h"

namespace po = boost::program_options;
using syncbn::train::TrainConfig;

namespace {

// Config lines longer than this are not settings but a wrong or damaged file.
constexpr std::size_t kMaxConfigLineBytes = 4096;
// --threads: OpenMP thread teams far beyond the cores of any node fail inside the runtime.
constexpr int kMaxThreads = 1024;

// The text of a --config file, after checking that every line is short text: Boost would echo a
// bad line whole in its error, however long or binary.
std::string read_config_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  SYNCBN_CHECK(file.good(), "cannot open config file '", path, "'");
  std::ostringstream content;
  content << file.rdbuf();
  const std::string text = content.str();
  std::istringstream lines(text);
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    SYNCBN_CHECK(line.size() <= kMaxConfigLineBytes, "config file '", path, "' line ", number,
                 " is too long (", line.size(), " bytes, at most ", kMaxConfigLineBytes,
                 "): ", syncbn::quote_brief(line));
    for (std::size_t column = 0; column < line.size(); ++column) {
      const auto byte = static_cast<unsigned char>(line[column]);
      SYNCBN_CHECK((byte >= 0x20 && byte != 0x7F) || byte == '\t', "config file '", path, "' line ",
                   number, " holds a control byte ", syncbn::quote_brief(line.substr(column, 1)),
                   " at column ", column + 1, ", not text: ", syncbn::quote_brief(line));
    }
  }
  return text;
}

// Boost's message with every quoted part ('value', 'line') shortened and escaped: a 10 kB value
// on the command line is quoted in 80 characters.
std::string brief_boost_message(const std::string& message) {
  std::string out;
  std::size_t at = 0;
  while (at < message.size()) {
    const std::size_t open = message.find('\'', at);
    const std::size_t close = open == std::string::npos ? open : message.find('\'', open + 1);
    if (close == std::string::npos) {
      out += message.substr(at);
      break;
    }
    out += message.substr(at, open - at);
    out += syncbn::quote_brief(std::string_view(message).substr(open + 1, close - open - 1));
    at = close + 1;
  }
  return out;
}

uint64_t parse_seed(const std::string& text) {
  uint64_t seed = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seed);
  SYNCBN_CHECK(error == std::errc() && end == text.data() + text.size() && !text.empty(),
               "--seed must be an integer in 0..", std::numeric_limits<uint64_t>::max(), ", got ",
               syncbn::quote_brief(text));
  return seed;
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SYNCBN_CHECK(used == part.size() && !part.empty() && value > 0,
                 "--synthetic-shape must be three positive integers C,H,W, got ",
                 syncbn::quote_brief(text));
    shape.push_back(value);
  }
  SYNCBN_CHECK(shape.size() == 3, "--synthetic-shape must be C,H,W, got ",
               syncbn::quote_brief(text));
  return shape;
}

// The command line, with "--resume PATH" joined into "--resume=PATH": Boost reads an option
// whose value is optional (--resume alone means --checkpoint-dir) only from "--resume=PATH".
std::vector<std::string> join_optional_values(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--resume" && !args[i + 1].empty() && args[i + 1][0] != '-') {
      args[i] += "=" + args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  return args;
}

// Returns false when the program should exit at once (--help).
bool parse_flags(int argc, char** argv, TrainConfig& c, int& threads, bool leader) {
  std::string synthetic_shape = "1,28,28";
  std::string config_file;
  std::string seed = std::to_string(c.seed);
  bool no_progress = false, no_decay_norm_and_bias = false;
  const po::options_description options = syncbn::train::train_options(
      c, threads, config_file, synthetic_shape, seed, no_decay_norm_and_bias, no_progress);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(join_optional_values(argc, argv)).options(options).run(), vm);
    if (vm.count("help")) {
      if (leader) std::cout << "usage: syncbn-train [options]\n\n" << options << "\n";
      return false;
    }
    if (vm.count("config")) {
      std::istringstream file(read_config_file(vm["config"].as<std::string>()));
      // Stored after the command line: Boost keeps the first value, so the command line wins.
      syncbn::train::store_config_file(file, options, vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL(brief_boost_message(e.what()), " (see --help)");
  }
  c.synthetic_shape = parse_shape(synthetic_shape);
  c.seed = parse_seed(seed);
  c.decay_norm_and_bias = !no_decay_norm_and_bias;
  c.progress = !no_progress;
  if (vm.count("resume") && c.resume.empty()) c.resume = c.checkpoint_dir;
  SYNCBN_CHECK(!vm.count("resume") || !c.resume.empty(),
               "--resume without a path needs --checkpoint-dir (the directory to resume from)");
  SYNCBN_CHECK(threads >= 0 && threads <= kMaxThreads, "--threads must be an integer in 0..",
               kMaxThreads, " (0 = cores / ranks on this node), got ", threads);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  syncbn::dist::Runtime runtime;
  return syncbn::dist::run_and_abort_on_error([&] {
    auto world = runtime.world();
    TrainConfig config;
    int threads = 0;
    if (!parse_flags(argc, argv, config, threads, world->rank() == 0)) return 0;
    if (threads == 0) {
      // Share the node's cores among the ranks on it.
      const long cores = sysconf(_SC_NPROCESSORS_ONLN);
      threads = std::max<int>(1, static_cast<int>(cores) / std::max(1, world->local_size()));
    }
    syncbn::set_num_threads(threads);
    syncbn::train::run_training(config, world);
    return 0;
  });
}
