// Fuzzes syncbn-train's config-file parsing: the input is a --config file, read with the
// program's own options description (train_options) and stored and notified as syncbn-train
// does. A boost::program_options::error or syncbn::Error is a clean rejection; any other
// exception, a crash, a sanitizer report or a timeout is a bug.
#include <boost/program_options.hpp>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "syncbn/error.h"
#include "train/train_options.h"

namespace po = boost::program_options;

// Where the flags' values land. Parsing an input reads only the description (whose defaults
// were fixed when it was built), never these, so one description serves every input.
struct Targets {
  syncbn::train::TrainConfig config;
  int threads = 0;
  std::string config_file, synthetic_shape = "1,28,28", seed = "0";
  bool no_decay_norm_and_bias = false, no_progress = false;
};

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static Targets targets;
  static const po::options_description options = syncbn::train::train_options(
      targets.config, targets.threads, targets.config_file, targets.synthetic_shape, targets.seed,
      targets.no_decay_norm_and_bias, targets.no_progress);
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    po::variables_map vm;
    syncbn::train::store_config_file(in, options, vm);
    po::notify(vm);
  } catch (const po::error&) {
  } catch (const syncbn::Error&) {
  }
  return 0;
}
