#pragma once
// Command-line parsing shared by the MPI benchmarks: a Boost.Program_options error becomes a
// syncbn::Error (so the job ends with "rank R: ..."), and --help prints once, on rank 0.
#include <boost/program_options.hpp>
#include <iostream>

#include "syncbn/error.h"

namespace syncbn::bench {

// Parses argv into `values`; returns false when --help was asked for (the program then exits 0).
inline bool parse_flags(int argc, char** argv,
                        const boost::program_options::options_description& options, bool leader,
                        boost::program_options::variables_map& values) {
  namespace po = boost::program_options;
  try {
    po::store(po::parse_command_line(argc, argv, options), values);
    po::notify(values);
  } catch (const po::error& e) {
    SYNCBN_FAIL(e.what());
  }
  if (values.count("help")) {
    if (leader) std::cout << options << "\n";
    return false;
  }
  return true;
}

}  // namespace syncbn::bench
