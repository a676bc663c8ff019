// syncbn-train: data-parallel training with synchronised batch norm, on one process or under
// mpirun / srun. Flags come from the command line and, optionally, a --config file in
// Boost.Program_options' format (key = value); the command line wins.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/threads.h"
#include "syncbn/train/trainer.h"
#include "train/train_options.h"

namespace po = boost::program_options;
using syncbn::train::TrainConfig;

namespace {

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
                 "--synthetic-shape must be three positive integers C,H,W, got '", text, "'");
    shape.push_back(value);
  }
  SYNCBN_CHECK(shape.size() == 3, "--synthetic-shape must be C,H,W, got '", text, "'");
  return shape;
}

// Returns false when the program should exit at once (--help).
bool parse_flags(int argc, char** argv, TrainConfig& c, int& threads, bool leader) {
  std::string synthetic_shape = "1,28,28";
  std::string config_file;
  bool no_progress = false, no_decay_norm_and_bias = false;
  const po::options_description options = syncbn::train::train_options(
      c, threads, config_file, synthetic_shape, no_decay_norm_and_bias, no_progress);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    if (vm.count("help")) {
      if (leader) std::cout << "usage: syncbn-train [options]\n\n" << options << "\n";
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream file(path);
      SYNCBN_CHECK(file.good(), "cannot open config file '", path, "'");
      // Stored after the command line: Boost keeps the first value, so the command line wins.
      syncbn::train::store_config_file(file, options, vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL(e.what(), " (see --help)");
  }
  c.synthetic_shape = parse_shape(synthetic_shape);
  c.decay_norm_and_bias = !no_decay_norm_and_bias;
  c.progress = !no_progress;
  SYNCBN_CHECK(threads >= 0, "--threads must be >= 0, got ", threads);
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
