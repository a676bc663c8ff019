#pragma once
// syncbn-train's flags as one Boost.Program_options description, and the reading of its
// --config file (key = value lines). Internal: syncbn-train and the config fuzzer share it.
#include <boost/program_options.hpp>
#include <istream>
#include <string>

#include "syncbn/train/trainer.h"

namespace syncbn::train {

// Every flag of syncbn-train. Each one is bound to a field of `c` or to one of the other
// arguments (the flags that are not TrainConfig fields, and --seed, read as text so that a
// negative or fractional value is an error instead of wrapping); the defaults are their current
// values, except threads, whose default is 0. The description keeps these addresses: they must
// outlive it.
boost::program_options::options_description train_options(
    TrainConfig& c, int& threads, std::string& config_file, std::string& synthetic_shape,
    std::string& seed, bool& no_decay_norm_and_bias, bool& no_progress);

// Parses a config file's text with `options` and stores it in `vm` after what is already there
// (Boost keeps the first value, so the command line stored before wins). Throws
// boost::program_options::error on an unknown key or a malformed value.
void store_config_file(std::istream& in, const boost::program_options::options_description& options,
                       boost::program_options::variables_map& vm);

}  // namespace syncbn::train
