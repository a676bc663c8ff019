#include "study/spec.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <set>
#include <sstream>

#include "syncbn/error.h"
#include "train/train_options.h"
#include "util/format.h"

namespace syncbn::study {

namespace po = boost::program_options;

namespace {

// syncbn-train options that the study sets for each cell, and where the spec sets them instead.
const std::vector<std::pair<std::string, std::string>> kPerCellOptions = {
    {"norm", "the norms axis"},
    {"sync-group-size", "norms as syncbn:K"},
    {"batch-size", "the batch-per-rank or global-batch axis"},
    {"seed", "the seeds axis"},
    {"scale-lr", "lr-rule = linear"},
    {"metrics", "the study (DIR/cells/<id>/metrics.jsonl)"},
    {"no-progress", "the study"},
    {"config", "the spec itself"},
    {"help", "syncbn-train --help"},
};

// Keys of the study itself; model and lr are syncbn-train options that the study also reads.
const std::vector<std::pair<std::string, std::string>> kStudyKeys = {
    {"ranks", "axis: numbers of ranks P, e.g. \"1 2 4 8\" or \"1,2,4,8\""},
    {"batch-per-rank", "axis (mode weak): batch sizes per rank"},
    {"global-batch", "axis (mode strong): global batch sizes, split as B/P per rank"},
    {"norms", "axis: bn syncbn syncbn:K gn ln in none"},
    {"seeds", "axis: seeds (default 0)"},
    {"mode", "weak (the batch per rank stays as P grows) | strong (a fixed global batch)"},
    {"lr-rule", "fixed (--lr as given) | linear (lr = lr * global_batch / ref-batch)"},
    {"ref-batch", "linear lr rule: the reference global batch (default 256)"},
    {"lr", "learning rate (the base rate with lr-rule linear; default syncbn-train's)"},
    {"model", "syncbn-train --model (default syncbn-train's)"},
    {"launcher", "extra syncbn-run options for every cell, e.g. \"--hostfile hosts.txt\""},
};

// Keys of the [sweep] section reach the variables_map as "sweep.<key>".
constexpr const char* kSweepPrefix = "sweep.";

const std::set<std::string>& study_key_names() {
  static const std::set<std::string> names = [] {
    std::set<std::string> out;
    for (const auto& [key, help] : kStudyKeys) out.insert(key);
    return out;
  }();
  return names;
}

// syncbn-train's option list, with the storage its descriptions bind to.
struct TrainOptionList {
  train::TrainConfig config;
  int threads = 0;
  std::string config_file, synthetic_shape = "1,28,28", seed = "0";
  bool no_decay = false, no_progress = false;
  po::options_description options = train::train_options(
      config, threads, config_file, synthetic_shape, seed, no_decay, no_progress);
};

bool is_switch(const po::option_description& option) {
  return option.semantic()->max_tokens() == 0;
}

// The spec keys forwarded to syncbn-train: its options, less those set per cell or by the study.
std::vector<std::pair<std::string, bool>> forwarded_train_options() {
  TrainOptionList list;
  std::vector<std::pair<std::string, bool>> out;
  for (const auto& option : list.options.options()) {
    const std::string& name = option->long_name();
    const bool per_cell = std::any_of(kPerCellOptions.begin(), kPerCellOptions.end(),
                                      [&](const auto& entry) { return entry.first == name; });
    if (per_cell || study_key_names().count(name)) continue;
    out.emplace_back(name, is_switch(*option));
  }
  return out;
}

std::vector<std::string> split_words(const std::string& text, bool commas) {
  std::vector<std::string> words;
  std::string word;
  for (const char c : text) {
    if (c == ' ' || c == '\t' || (commas && c == ',')) {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(word);
  return words;
}

double parse_double(const std::string& key, const std::string& text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  SYNCBN_CHECK(error == std::errc() && end == text.data() + text.size() && !text.empty() &&
                   std::isfinite(value) && value > 0,
               "spec: ", key, " must be a positive number, got ", quote_brief(text));
  return value;
}

bool parse_bool(const std::string& key, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  SYNCBN_FAIL("spec: ", key, " is a switch: true or false, got ", quote_brief(text));
}

std::string text_of(const po::variables_map& vm, const std::string& key) {
  return vm.count(key) ? vm[key].as<std::string>() : std::string();
}

std::string one_of(const po::variables_map& vm, const std::string& key,
                   const std::vector<std::string>& choices) {
  const std::string value = vm.count(key) ? text_of(vm, key) : choices.front();
  SYNCBN_CHECK(std::find(choices.begin(), choices.end(), value) != choices.end(), "spec: ", key,
               " must be ", choices[0], " or ", choices[1], ", got ", quote_brief(value));
  return value;
}

template <class T>
void check_unique(const std::string& key, const std::vector<T>& values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      SYNCBN_CHECK(!(values[i] == values[j]), "spec: ", key, " lists ", values[i], " twice");
}

// Checks the forwarded arguments with syncbn-train's own parser, so that a typo in a value
// ("epochs = one") is reported once, before any cell runs, instead of failing every cell.
void check_with_train_parser(const std::vector<std::string>& args) {
  TrainOptionList list;
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(list.options).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL("spec: syncbn-train would reject its arguments: ", e.what());
  }
}

void check_not_per_cell(const std::string& key, const std::string& where) {
  for (const auto& [name, instead] : kPerCellOptions)
    SYNCBN_CHECK(key != name, where, ": '", key, "' is set per cell by the study; use ", instead);
}

// The [sweep] axes, each value checked alone by syncbn-train's parser; a key may not be both a
// fixed key (or an argument after --) and an axis, since one of the two would be ignored.
std::vector<SweepAxis> sweeps_from(const po::variables_map& vm,
                                   const std::vector<std::string>& fixed_args) {
  std::vector<SweepAxis> sweeps;
  for (const auto& [name, value] : vm) {
    if (name.rfind(kSweepPrefix, 0) != 0) continue;
    SweepAxis axis{name.substr(std::strlen(kSweepPrefix)), split_words(text_of(vm, name), false)};
    const std::string where = "[sweep] " + axis.key;
    SYNCBN_CHECK(!axis.values.empty(), "spec: ", where, " is empty: list at least one value");
    check_unique(where, axis.values);
    const bool fixed = vm.count(axis.key) ||
                       std::any_of(fixed_args.begin(), fixed_args.end(), [&](const auto& arg) {
                         return arg == "--" + axis.key || arg.rfind("--" + axis.key + "=", 0) == 0;
                       });
    SYNCBN_CHECK(!fixed, "spec: ", axis.key,
                 " is both a fixed key and a [sweep] axis: keep one of the two");
    for (const std::string& text : axis.values) {
      if (axis.key == "lr") {
        parse_double(where, text);
      } else {
        check_with_train_parser({"--" + axis.key, text});
      }
    }
    sweeps.push_back(std::move(axis));
  }
  return sweeps;
}

// Every combination of the sweep axes' values, the first axis varying slowest; one empty
// setting when there are no axes.
std::vector<std::vector<std::pair<std::string, std::string>>> sweep_settings(
    const std::vector<SweepAxis>& axes) {
  std::vector<std::vector<std::pair<std::string, std::string>>> settings(1);
  for (const SweepAxis& axis : axes) {
    std::vector<std::vector<std::pair<std::string, std::string>>> next;
    for (const auto& setting : settings) {
      for (const std::string& value : axis.values) {
        next.push_back(setting);
        next.back().emplace_back(axis.key, value);
      }
    }
    settings = std::move(next);
  }
  return settings;
}

// A value as part of a directory name: characters other than [A-Za-z0-9._-] become '_'
// ("constant:10" -> "constant_10").
std::string id_safe(const std::string& value) {
  std::string out = value;
  for (char& c : out)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  return out;
}

}  // namespace

std::vector<int64_t> parse_int_list(const std::string& key, const std::string& text,
                                    int64_t minimum) {
  std::vector<int64_t> values;
  for (const std::string& word : split_words(text, true)) {
    int64_t value = 0;
    const auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value);
    SYNCBN_CHECK(error == std::errc() && end == word.data() + word.size() && value >= minimum,
                 "spec: ", key, " must list integers >= ", minimum, ", got ", quote_brief(word),
                 " in ", quote_brief(text));
    values.push_back(value);
  }
  SYNCBN_CHECK(!values.empty(), "spec: ", key, " is empty: list at least one value");
  check_unique(key, values);
  return values;
}

NormSpec parse_norm(const std::string& text) {
  static const std::set<std::string> kNorms = {"bn", "syncbn", "gn", "ln", "in", "none"};
  NormSpec norm{text, text, 0};
  const std::size_t colon = text.find(':');
  if (colon != std::string::npos) {
    norm.norm = text.substr(0, colon);
    const std::string group = text.substr(colon + 1);
    const auto [end, error] =
        std::from_chars(group.data(), group.data() + group.size(), norm.sync_group_size);
    SYNCBN_CHECK(norm.norm == "syncbn" && error == std::errc() &&
                     end == group.data() + group.size() && norm.sync_group_size >= 1,
                 "spec: norm ", quote_brief(text),
                 " is not valid: only syncbn takes a group size, as syncbn:K with K >= 1");
  }
  SYNCBN_CHECK(kNorms.count(norm.norm), "spec: unknown norm ", quote_brief(text),
               " (bn, syncbn, syncbn:K, gn, ln, in, none)");
  return norm;
}

std::vector<NormSpec> parse_norms(const std::string& text) {
  std::vector<NormSpec> norms;
  std::vector<std::string> names;
  for (const std::string& word : split_words(text, true)) {
    norms.push_back(parse_norm(word));
    names.push_back(word);
  }
  SYNCBN_CHECK(!norms.empty(), "spec: norms is empty: list at least one norm");
  check_unique("norms", names);
  return norms;
}

po::options_description spec_options() {
  po::options_description options("study spec keys (in SPEC as key = value, or --key value)");
  for (const auto& [key, help] : kStudyKeys)
    options.add_options()(key.c_str(), po::value<std::string>(), help.c_str());
  for (const auto& [key, is_switch] : forwarded_train_options()) {
    const std::string help = "syncbn-train --" + key + (is_switch ? " (true | false)" : "");
    if (is_switch) {
      options.add_options()(key.c_str(), po::value<std::string>()->implicit_value("true"),
                            help.c_str());
    } else {
      options.add_options()(key.c_str(), po::value<std::string>(), help.c_str());
    }
  }
  // Sweep axes: in a spec file a [sweep] section (`lr = 0.01 0.1`), on the command line
  // --sweep.lr "0.01 0.1". Switches are left out: a sweep over one is two studies.
  const std::string sweep_help = "sweep axis: values separated by spaces";
  options.add_options()((std::string(kSweepPrefix) + "lr").c_str(), po::value<std::string>(),
                        sweep_help.c_str());
  for (const auto& [key, is_switch] : forwarded_train_options())
    if (!is_switch)
      options.add_options()((kSweepPrefix + key).c_str(), po::value<std::string>(),
                            sweep_help.c_str());
  return options;
}

void store_spec_file(const std::string& config_text, const std::string& config_name,
                     const po::options_description& options, po::variables_map& vm) {
  std::istringstream in(config_text);
  try {
    const po::parsed_options parsed = po::parse_config_file(in, options, true);
    for (const auto& option : parsed.options) {
      if (!option.unregistered) continue;
      const std::string& key = option.string_key;
      if (key.rfind(kSweepPrefix, 0) == 0) {
        const std::string swept = key.substr(std::strlen(kSweepPrefix));
        check_not_per_cell(swept, config_name + " [sweep]");
        SYNCBN_FAIL(config_name, " [sweep]: '", swept,
                    "' is not a syncbn-train option that takes a value (see syncbn-train --help)");
      }
      check_not_per_cell(key, config_name);
      SYNCBN_FAIL(config_name, ": unknown key '", option.string_key,
                  "' (see syncbn-study run --help)");
    }
    po::store(parsed, vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL(config_name, ": ", e.what());
  }
}

StudySpec spec_from(const po::variables_map& vm, const std::vector<std::string>& extra_train_args) {
  const train::TrainConfig defaults;
  StudySpec spec;
  SYNCBN_CHECK(vm.count("ranks"), "spec: ranks is missing (e.g. ranks = 1 2 4 8)");
  spec.ranks = parse_int_list("ranks", text_of(vm, "ranks"), 1);
  spec.mode = one_of(vm, "mode", {"weak", "strong"});
  if (spec.mode == "weak") {
    SYNCBN_CHECK(vm.count("batch-per-rank"), "spec: batch-per-rank is missing (mode weak)");
    SYNCBN_CHECK(!vm.count("global-batch"),
                 "spec: global-batch is for mode strong; mode weak takes batch-per-rank");
    spec.batch_per_rank = parse_int_list("batch-per-rank", text_of(vm, "batch-per-rank"), 1);
  } else {
    SYNCBN_CHECK(vm.count("global-batch"), "spec: global-batch is missing (mode strong)");
    SYNCBN_CHECK(!vm.count("batch-per-rank"),
                 "spec: batch-per-rank is for mode weak; mode strong takes global-batch");
    spec.global_batch = parse_int_list("global-batch", text_of(vm, "global-batch"), 1);
  }
  SYNCBN_CHECK(vm.count("norms"), "spec: norms is missing (e.g. norms = bn syncbn gn)");
  spec.norms = parse_norms(text_of(vm, "norms"));
  if (vm.count("seeds")) {
    spec.seeds.clear();
    for (const int64_t seed : parse_int_list("seeds", text_of(vm, "seeds"), 0))
      spec.seeds.push_back(static_cast<uint64_t>(seed));
  }
  spec.lr_rule = one_of(vm, "lr-rule", {"fixed", "linear"});
  spec.lr = vm.count("lr") ? parse_double("lr", text_of(vm, "lr")) : defaults.lr;
  if (vm.count("ref-batch")) {
    const auto ref = parse_int_list("ref-batch", text_of(vm, "ref-batch"), 1);
    SYNCBN_CHECK(ref.size() == 1, "spec: ref-batch is one number");
    spec.ref_batch = ref[0];
  }
  spec.model = vm.count("model") ? text_of(vm, "model") : defaults.model;
  SYNCBN_CHECK(!spec.model.empty(), "spec: model is empty");
  spec.launcher_args = split_words(text_of(vm, "launcher"), false);

  for (const auto& [key, is_switch] : forwarded_train_options()) {
    if (!vm.count(key)) continue;
    const std::string value = text_of(vm, key);
    if (is_switch) {
      if (parse_bool(key, value)) spec.train_args.push_back("--" + key);
    } else {
      SYNCBN_CHECK(!value.empty(), "spec: ", key, " is empty");
      spec.train_args.insert(spec.train_args.end(), {"--" + key, value});
    }
  }
  for (const std::string& arg : extra_train_args) {
    if (arg.rfind("--", 0) != 0) continue;
    const std::string key = arg.substr(2, arg.find('=') - 2);
    check_not_per_cell(key, "arguments after --");
    SYNCBN_CHECK(key != "lr" && key != "model", "arguments after --: set ", key,
                 " as a spec key (--", key, " before --), the study records it");
  }
  spec.train_args.insert(spec.train_args.end(), extra_train_args.begin(), extra_train_args.end());
  std::vector<std::string> check = spec.train_args;
  check.insert(check.end(), {"--model", spec.model, "--lr", shortest_repr(spec.lr)});
  check_with_train_parser(check);
  spec.sweeps = sweeps_from(vm, spec.train_args);
  return spec;
}

StudySpec parse_spec(const std::string& config_text, const std::string& config_name,
                     const std::vector<std::string>& command_line) {
  const po::options_description options = spec_options();
  po::variables_map vm;
  std::vector<std::string> before = command_line, after;
  const auto dashes = std::find(before.begin(), before.end(), "--");
  if (dashes != before.end()) {
    after.assign(dashes + 1, before.end());
    before.erase(dashes, before.end());
  }
  try {
    po::store(po::command_line_parser(before).options(options).run(), vm);
  } catch (const po::error& e) {
    SYNCBN_FAIL("command line: ", e.what());
  }
  store_spec_file(config_text, config_name, options, vm);
  return spec_from(vm, after);
}

Expansion expand(const StudySpec& spec) {
  Expansion out;
  const std::vector<int64_t>& batches =
      spec.mode == "weak" ? spec.batch_per_rank : spec.global_batch;
  for (const int64_t ranks : spec.ranks) {
    for (const int64_t batch : batches) {
      Cell cell;
      cell.ranks = ranks;
      if (spec.mode == "weak") {
        cell.batch_per_rank = batch;
        cell.global_batch = batch * ranks;
      } else {
        if (batch % ranks != 0) {
          out.notes.push_back("skipped: global batch " + std::to_string(batch) +
                              " does not split over " + std::to_string(ranks) + " ranks");
          continue;
        }
        cell.global_batch = batch;
        cell.batch_per_rank = batch / ranks;
      }
      for (const auto& sweep : sweep_settings(spec.sweeps)) {
        double base_lr = spec.lr;
        std::string sweep_id;
        std::vector<std::string> sweep_args;
        for (const auto& [key, value] : sweep) {
          sweep_id += "-" + key + "=" + id_safe(value);
          if (key == "lr") {
            base_lr = std::stod(value);
          } else {
            sweep_args.insert(sweep_args.end(), {"--" + key, value});
          }
        }
        // linear rule: the step size per sample stays that of `lr` at the reference batch.
        const double lr = spec.lr_rule == "linear"
                              ? base_lr * static_cast<double>(cell.global_batch) /
                                    static_cast<double>(spec.ref_batch)
                              : base_lr;
        for (const NormSpec& norm : spec.norms) {
          // syncbn-train rejects a --sync-group-size that does not divide the ranks.
          if (norm.sync_group_size > 0 && ranks % norm.sync_group_size != 0) {
            const std::string note = "skipped: " + norm.name + " needs a multiple of " +
                                     std::to_string(norm.sync_group_size) + " ranks, not " +
                                     std::to_string(ranks);
            if (std::find(out.notes.begin(), out.notes.end(), note) == out.notes.end())
              out.notes.push_back(note);
            continue;
          }
          for (const uint64_t seed : spec.seeds) {
            Cell c = cell;
            c.norm = norm;
            c.seed = seed;
            c.lr = lr;
            c.sweep = sweep;
            std::string norm_id = norm.norm;
            if (norm.sync_group_size > 0) norm_id += "_g" + std::to_string(norm.sync_group_size);
            c.id = "np" + std::to_string(ranks) + "-b" + std::to_string(c.batch_per_rank) +
                   sweep_id + "-" + norm_id + "-s" + std::to_string(seed);
            c.train_args = {"--model", spec.model, "--norm", norm.norm};
            if (norm.sync_group_size > 0)
              c.train_args.insert(c.train_args.end(),
                                  {"--sync-group-size", std::to_string(norm.sync_group_size)});
            c.train_args.insert(c.train_args.end(),
                                {"--batch-size", std::to_string(c.batch_per_rank), "--seed",
                                 std::to_string(seed), "--lr", shortest_repr(c.lr)});
            c.train_args.insert(c.train_args.end(), spec.train_args.begin(), spec.train_args.end());
            c.train_args.insert(c.train_args.end(), sweep_args.begin(), sweep_args.end());
            out.cells.push_back(std::move(c));
          }
        }
      }
    }
  }
  std::set<std::string> ids;
  for (const Cell& cell : out.cells)
    SYNCBN_CHECK(ids.insert(cell.id).second, "spec: two cells would share the id ", cell.id,
                 " ([sweep] values that differ only in characters other than A-Z a-z 0-9 . _ -)");
  return out;
}

}  // namespace syncbn::study
