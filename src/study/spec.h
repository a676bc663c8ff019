#pragma once
// A scaling study's specification (a config file of key = value lines, like syncbn-train's
// --config) and its expansion into cells: the cartesian product ranks x batch x sweeps x norm x
// seed, each one syncbn-train run under syncbn-run. Sweep axes range over any syncbn-train option
// (a [sweep] section of the spec: `lr = 0.01 0.1`, `init = xavier zeros`).
#include <boost/program_options.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace syncbn::study {

// One entry of the `norms` axis: bn, syncbn, syncbn:K (SyncBN over groups of K ranks), gn, ln,
// in, none.
struct NormSpec {
  std::string name;             // as written in the spec ("syncbn:2")
  std::string norm;             // syncbn-train --norm ("syncbn")
  int64_t sync_group_size = 0;  // syncbn-train --sync-group-size (0 = all ranks)
};

// One sweep axis: a syncbn-train option and the values the cells take, as written.
struct SweepAxis {
  std::string key;  // "lr", "init", "norm-placement", ...
  std::vector<std::string> values;
};

struct StudySpec {
  std::vector<int64_t> ranks;
  std::vector<int64_t> batch_per_rank;  // mode weak
  std::vector<int64_t> global_batch;    // mode strong
  std::vector<NormSpec> norms;
  std::vector<uint64_t> seeds = {0};
  std::string mode = "weak";      // weak | strong
  std::string lr_rule = "fixed";  // fixed | linear
  double lr = 0;                  // the base rate (syncbn-train's default unless given)
  int64_t ref_batch = 256;        // linear: lr = lr * global_batch / ref_batch
  std::string model;              // syncbn-train --model (its default unless given)
  // syncbn-train options set in the spec, forwarded to every cell as --key value (or --key for
  // switches), in the order of syncbn-train's option list; then the arguments after "--".
  std::vector<std::string> train_args;
  std::vector<std::string> launcher_args;  // `launcher` key: extra syncbn-run options
  std::vector<SweepAxis> sweeps;           // [sweep] section, in key order
};

struct Cell {
  std::string id;  // "np2-b8-syncbn_g2-s0": a directory name, stable across reruns
  int64_t ranks = 1, batch_per_rank = 0, global_batch = 0;
  NormSpec norm;
  uint64_t seed = 0;
  double lr = 0;
  // This cell's value of each sweep axis (key, value), in the order of StudySpec::sweeps.
  std::vector<std::pair<std::string, std::string>> sweep;
  // syncbn-train's arguments for this cell, without --metrics and --no-progress.
  std::vector<std::string> train_args;
};

struct Expansion {
  std::vector<Cell> cells;
  std::vector<std::string> notes;  // cells left out, and why
};

// Parses one axis: integers separated by spaces and/or commas ("1 2 4 8", "1,2,4,8"). `key`
// names the axis in errors; an empty list, a non-integer or a value below `minimum` throws.
std::vector<int64_t> parse_int_list(const std::string& key, const std::string& text,
                                    int64_t minimum);
NormSpec parse_norm(const std::string& text);
std::vector<NormSpec> parse_norms(const std::string& text);

// The spec keys (the study's own and every syncbn-train option the study does not set per
// cell), each stored as text in the variables_map.
boost::program_options::options_description spec_options();

// Stores a config file's keys in `vm` after what is there (Boost keeps the first value: the
// command line stored before wins). Throws syncbn::Error naming the key on an unknown key, a key
// the study sets per cell (norm, batch-size, ...) or a repeated key.
void store_spec_file(const std::string& config_text, const std::string& config_name,
                     const boost::program_options::options_description& options,
                     boost::program_options::variables_map& vm);

// The spec from the stored keys, plus raw syncbn-train arguments for every cell (what follows
// "--" on the command line). Throws syncbn::Error naming the key on a missing or empty axis, a
// bad value, or a forwarded option that syncbn-train would reject.
StudySpec spec_from(const boost::program_options::variables_map& vm,
                    const std::vector<std::string>& extra_train_args);

// The two steps above for a spec given as text and command-line words (tests, and --dry-run).
StudySpec parse_spec(const std::string& config_text, const std::string& config_name,
                     const std::vector<std::string>& command_line);

// Every cell of the study, in the order ranks, batch, sweeps (the first axis slowest), norm, seed
// (seeds vary fastest); strong mode leaves out the cells whose global batch the ranks do not
// divide, and every mode the syncbn:K cells whose ranks K does not divide, each with one note. A
// cell's id adds "-key=value" per sweep axis after the batch.
Expansion expand(const StudySpec& spec);

}  // namespace syncbn::study
