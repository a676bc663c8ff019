// syncbn-model: the step-time model of data-parallel training with SyncBN at P ranks
// (src/study/step_model.h, docs/studies/step-model.md). Three commands:
//
//   syncbn-model calibrate --allreduce BENCH.jsonl [--compute MODEL=METRICS.jsonl ...]
//                          --out calibration.json
//       fits alpha and bandwidth to syncbn-bench-allreduce rows, and each model's compute
//       (fixed + per-sample, per phase where the metrics have phases) to single-rank
//       syncbn-train --metrics files at several batch sizes.
//   syncbn-model predict --calibration calibration.json --model cnn
//                        [--run NORM=METRICS.jsonl ...] [--results results.jsonl]
//                        [--concurrent P=METRICS ...] [--cores N] [--threads-per-rank T]
//                        [--out table.md]
//       measured against predicted step time, one row per run (runs of syncbn-train
//       --metrics, or the ok rows of a syncbn-study results.jsonl), with the CPU sharing of
//       ranks on N cores modelled as a slowdown of compute by max(1, P T / N), or measured:
//       single-rank runs made P at a time (--concurrent) give compute at P. A run whose metrics
//       have per-phase times ("time": {...}) brings its own compute at P.
//   syncbn-model project [--calibration calibration.json] [--compute MODEL=FIXED_MS,PER_SAMPLE_MS]
//                        [--alpha-us 8] [--bandwidth-gbs 25] [--algorithm nccl]
//                        [--ranks 8,16,...,512] [--batches 2,4,8,16,32]
//                        [--norms bn,syncbn,syncbn:8] --out projection.md
//       the step time at many ranks on an assumed network, as markdown with a conclusion.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "study/spec.h"
#include "study/step_model.h"
#include "study/step_model_report.h"
#include "syncbn/error.h"

namespace po = boost::program_options;
using namespace syncbn;
using namespace syncbn::study;

namespace {

// "KEY=VALUE" split at the first '='.
std::pair<std::string, std::string> split_assignment(const std::string& text,
                                                     const std::string& flag) {
  const auto at = text.find('=');
  SYNCBN_CHECK(at != std::string::npos && at > 0 && at + 1 < text.size(), "--", flag, " '", text,
               "': expected NAME=VALUE");
  return {text.substr(0, at), text.substr(at + 1)};
}

std::vector<std::string> parse_name_list(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (!item.empty()) names.push_back(item);
  }
  return names;
}

std::ifstream open_input(const std::string& path) {
  std::ifstream file(path);
  SYNCBN_CHECK(file.good(), "cannot open '", path, "'");
  return file;
}

void write_output(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::cout << text;
    return;
  }
  std::ofstream file(path);
  SYNCBN_CHECK(file.good(), "cannot write '", path, "'");
  file << text;
  file.close();
  SYNCBN_CHECK(file.good(), "cannot write '", path, "'");
}

// Parses argv (after the command word); false when --help was printed.
bool parse(int argc, char** argv, const po::options_description& options, po::variables_map& vm) {
  po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
  if (vm.count("help")) {
    std::cout << options << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

int calibrate(int argc, char** argv) {
  std::string allreduce_file, algorithm = "mpi", out, note;
  std::vector<std::string> compute_runs;
  po::options_description options("syncbn-model calibrate options");
  options.add_options()("help,h", "show this help")(
      "allreduce", po::value(&allreduce_file)->required(),
      "syncbn-bench-allreduce output (its JSON lines; other lines are skipped)")(
      "algorithm", po::value(&algorithm)->default_value(algorithm),
      "allreduce cost formula to fit: ring | recursive-doubling | rabenseifner | tree | mpi | "
      "nccl (mpi: the cheapest of the first three, as MPI's tuned allreduce)")(
      "compute", po::value(&compute_runs)->composing(),
      "MODEL=METRICS: a single-rank syncbn-train --metrics file of MODEL (repeat, one per "
      "batch size)")("note", po::value(&note), "free text stored in the calibration (the setup)")(
      "out", po::value(&out)->required(), "calibration JSON to write");
  po::variables_map vm;
  if (!parse(argc, argv, options, vm)) return 0;

  std::ifstream bench = open_input(allreduce_file);
  const std::vector<AllreducePoint> points = read_allreduce_points(bench, allreduce_file);
  const AllreduceAlgorithm chosen = parse_allreduce_algorithm(algorithm);
  const Network network = fit_network(points, chosen);

  nlohmann::ordered_json record;
  record["note"] = note;
  record["network"] = {{"alpha_seconds", network.alpha_seconds},
                       {"bandwidth_bytes_per_second", network.bandwidth_bytes_per_second},
                       {"algorithm", allreduce_algorithm_name(chosen)},
                       {"fit", "least squares of log(predicted / measured) over all P > 1 points"}};
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& p : points) {
    const double predicted = allreduce_seconds(chosen, p.ranks, p.bytes, network);
    rows.push_back({{"ranks", p.ranks},
                    {"bytes", p.bytes},
                    {"seconds", p.seconds},
                    {"predicted_seconds", predicted},
                    {"measured_over_predicted", p.ranks > 1 ? p.seconds / predicted : 0.0}});
  }
  record["allreduce"] = rows;
  std::map<int64_t, std::vector<AllreducePoint>> by_ranks;
  for (const auto& p : points) {
    if (p.ranks > 1) by_ranks[p.ranks].push_back(p);
  }
  nlohmann::ordered_json per_ranks = nlohmann::ordered_json::array();
  for (const auto& [ranks, ranks_points] : by_ranks) {
    const Network fit = fit_network(ranks_points, chosen);
    per_ranks.push_back({{"ranks", ranks},
                         {"alpha_seconds", fit.alpha_seconds},
                         {"bandwidth_bytes_per_second", fit.bandwidth_bytes_per_second}});
    std::fprintf(stderr, "P = %lld alone: alpha = %.2f us, bandwidth = %.3f GB/s\n",
                 static_cast<long long>(ranks), 1e6 * fit.alpha_seconds,
                 fit.bandwidth_bytes_per_second / 1e9);
  }
  record["network_by_ranks"] = per_ranks;

  std::map<std::string, std::vector<MeasuredStep>> runs;
  std::map<std::string, std::vector<std::string>> files;
  for (const auto& item : compute_runs) {
    const auto [model, path] = split_assignment(item, "compute");
    model_structure(model);  // an unknown model name fails here, with the known ones
    std::ifstream metrics = open_input(path);
    runs[model].push_back(measured_from_metrics(metrics, path));
    files[model].push_back(path);
  }
  nlohmann::ordered_json compute = nlohmann::ordered_json::object();
  for (const auto& [model, model_runs] : runs) {
    nlohmann::ordered_json measured = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < model_runs.size(); ++i) {
      measured.push_back({{"file", files[model][i]},
                          {"batch_per_rank", model_runs[i].batch_per_rank},
                          {"steps", model_runs[i].steps},
                          {"seconds_per_step", model_runs[i].total},
                          {"has_phases", model_runs[i].has_phases}});
    }
    compute[model] = {{"phases", compute_to_json(fit_compute(model_runs))}, {"measured", measured}};
  }
  record["compute"] = compute;
  write_output(out, record.dump(2) + "\n");
  std::fprintf(stderr, "alpha = %.2f us, bandwidth = %.3f GB/s (%s, %zu points)\n",
               1e6 * network.alpha_seconds, network.bandwidth_bytes_per_second / 1e9,
               algorithm.c_str(), points.size());
  return 0;
}

int predict(int argc, char** argv) {
  std::string calibration_file, model, results, out, network_choice = "per-ranks";
  std::vector<std::string> run_files, concurrent_files;
  int64_t cores = 0, threads_per_rank = 1;
  po::options_description options("syncbn-model predict options");
  options.add_options()("help,h", "show this help")(
      "calibration", po::value(&calibration_file)->required(), "from syncbn-model calibrate")(
      "model", po::value(&model)->required(), "model of the runs (its compute must be calibrated)")(
      "run", po::value(&run_files)->composing(),
      "NORM=METRICS: a syncbn-train --metrics file and its norm (bn, syncbn, syncbn:K)")(
      "results", po::value(&results), "a syncbn-study results.jsonl (its ok rows of --model)")(
      "concurrent", po::value(&concurrent_files)->composing(),
      "P=METRICS: a single-rank run of --model at the runs' batch made while P such runs shared "
      "the machine (repeat): compute at P is measured, not modelled by --cores")(
      "cores", po::value(&cores)->default_value(cores),
      "cores that all ranks of a run shared (0: a core per rank thread, no sharing)")(
      "threads-per-rank", po::value(&threads_per_rank)->default_value(threads_per_rank),
      "CPU threads per rank")(
      "network", po::value(&network_choice)->default_value(network_choice),
      "per-ranks: the network fitted at the run's P where the calibration has it | global: "
      "the one fitted over all P")("out", po::value(&out),
                                   "markdown table to write (default stdout)");
  po::variables_map vm;
  if (!parse(argc, argv, options, vm)) return 0;
  SYNCBN_CHECK(!run_files.empty() || !results.empty(), "predict needs --run or --results");
  SYNCBN_CHECK(cores >= 0 && threads_per_rank >= 1, "--cores >= 0 and --threads-per-rank >= 1");
  SYNCBN_CHECK(network_choice == "per-ranks" || network_choice == "global", "--network '",
               network_choice, "': expected per-ranks or global");

  const Calibration calibration = read_calibration(calibration_file);
  SYNCBN_CHECK(calibration.compute.count(model) == 1, calibration_file,
               ": no compute calibrated for model '", model, "' (syncbn-model calibrate --compute ",
               model, "=METRICS)");
  const ModelStructure structure = model_structure(model);
  const ComputeProfile& compute = calibration.compute.at(model);

  // Compute per step of one rank while P ranks ran at once: mean over the concurrent runs at P.
  std::map<int64_t, std::pair<double, int64_t>> concurrent;  // P -> (sum of seconds, runs)
  std::map<int64_t, int64_t> concurrent_batch;
  for (const auto& item : concurrent_files) {
    const auto [ranks_text, path] = split_assignment(item, "concurrent");
    const int64_t ranks = study::parse_int_list("--concurrent", ranks_text, 1).at(0);
    std::ifstream metrics = open_input(path);
    const MeasuredStep m = measured_from_metrics(metrics, path);
    SYNCBN_CHECK(m.ranks == 1, path, ": a --concurrent run must be single-rank, has ", m.ranks);
    concurrent[ranks].first += m.total;
    concurrent[ranks].second += 1;
    concurrent_batch[ranks] = m.batch_per_rank;
  }

  std::vector<std::pair<std::string, MeasuredStep>> measured;
  for (const auto& item : run_files) {
    const auto [norm, path] = split_assignment(item, "run");
    parse_norm_sync(norm);
    std::ifstream metrics = open_input(path);
    measured.emplace_back(norm, measured_from_metrics(metrics, path));
  }
  if (!results.empty()) {
    std::ifstream rows = open_input(results);
    for (auto& run : measured_from_results(rows, results, model)) measured.push_back(run);
  }
  std::vector<ValidationRow> table;
  for (const auto& [norm, m] : measured) {
    ValidationRow row;
    row.model = model;
    row.norm = norm;
    row.measured = m;
    row.compute_slowdown = cores > 0 ? cpu_share_slowdown(m.ranks, threads_per_rank, cores) : 1;
    if (const auto it = concurrent.find(m.ranks); it != concurrent.end()) {
      SYNCBN_CHECK(concurrent_batch[m.ranks] == m.batch_per_rank,
                   "--concurrent runs at P = ", m.ranks, " have batch ", concurrent_batch[m.ranks],
                   ", the run has ", m.batch_per_rank);
      const double b = static_cast<double>(m.batch_per_rank);
      const double alone = compute.data.at(b) + compute.forward.at(b) + compute.backward.at(b) +
                           compute.optimizer.at(b);
      row.compute_slowdown = it->second.first / static_cast<double>(it->second.second) / alone;
    }
    StepInput input;
    input.model = structure;
    input.compute = compute;
    input.batch_per_rank = m.batch_per_rank;
    input.ranks = m.ranks;
    input.norm = parse_norm_sync(norm);
    const auto fitted = calibration.network_by_ranks.find(m.ranks);
    row.network = network_choice == "per-ranks" && fitted != calibration.network_by_ranks.end()
                      ? fitted->second
                      : calibration.network;
    input.network = row.network;
    input.algorithm = calibration.algorithm;
    input.compute_slowdown = row.compute_slowdown;
    if (m.has_phases) {
      // The run measured its own compute at P: only the communication is modelled.
      row.compute_from_run = true;
      input.compute = compute_of_run(m);
      input.compute_slowdown = 1;
    }
    row.predicted = predict_step(input);
    table.push_back(row);
  }
  write_output(out, validation_markdown(table));
  return 0;
}

int project(int argc, char** argv) {
  std::string calibration_file, out, algorithm = "nccl";
  std::string models, ranks = "8,16,32,64,128,256,512", batches = "2,4,8,16,32";
  std::string norms = "bn,syncbn,syncbn:8";
  std::vector<std::string> compute_flags;
  double alpha_us = 8, bandwidth_gbs = 25, speedup = 1, threshold = 0.10;
  po::options_description options("syncbn-model project options");
  options.add_options()("help,h", "show this help")(
      "calibration", po::value(&calibration_file),
      "compute per model from this calibration (measured here), unless --compute gives it")(
      "compute", po::value(&compute_flags)->composing(),
      "MODEL=FIXED_MS,PER_SAMPLE_MS: assumed compute per step (forward 1/3, backward 2/3)")(
      "compute-speedup", po::value(&speedup)->default_value(speedup),
      "divide the calibrated compute times by this (a faster device than the one measured)")(
      "alpha-us", po::value(&alpha_us)->default_value(alpha_us),
      "latency per message step, microseconds (NCCL over InfiniBand: about 5-10)")(
      "bandwidth-gbs", po::value(&bandwidth_gbs)->default_value(bandwidth_gbs),
      "bandwidth per rank, GB/s (HDR InfiniBand, 200 Gbit/s: 25)")(
      "algorithm", po::value(&algorithm)->default_value(algorithm),
      "allreduce cost: ring | recursive-doubling | rabenseifner | tree | mpi | nccl")(
      "models", po::value(&models),
      "comma-separated model names (default: every model with compute times)")(
      "ranks", po::value(&ranks)->default_value(ranks), "comma-separated P")(
      "batches", po::value(&batches)->default_value(batches), "comma-separated batch per rank")(
      "norms", po::value(&norms)->default_value(norms), "bn, syncbn, syncbn:K, comma-separated")(
      "threshold", po::value(&threshold)->default_value(threshold),
      "SyncBN share of the step that the conclusion reports")("out", po::value(&out),
                                                              "markdown to write (default stdout)");
  po::variables_map vm;
  if (!parse(argc, argv, options, vm)) return 0;
  SYNCBN_CHECK(alpha_us >= 0 && bandwidth_gbs > 0 && speedup > 0 && threshold > 0 && threshold < 1,
               "--alpha-us >= 0, --bandwidth-gbs > 0, --compute-speedup > 0 and 0 < --threshold "
               "< 1 needed");

  ProjectionSpec spec;
  spec.models = parse_name_list(models);
  SYNCBN_CHECK(!vm.count("models") || !spec.models.empty(), "--models is empty");
  spec.ranks = study::parse_int_list("--ranks", ranks, 1);
  spec.batches = study::parse_int_list("--batches", batches, 1);
  spec.norms = parse_name_list(norms);
  spec.network = {alpha_us * 1e-6, bandwidth_gbs * 1e9};
  spec.algorithm = parse_allreduce_algorithm(algorithm);
  spec.threshold = threshold;
  std::string compute_source;
  if (!calibration_file.empty()) {
    for (const auto& [model, compute] : read_calibration(calibration_file).compute) {
      ComputeProfile scaled = compute;
      for (LinearFit* fit : {&scaled.data, &scaled.forward, &scaled.backward, &scaled.optimizer}) {
        fit->fixed /= speedup;
        fit->per_sample /= speedup;
      }
      spec.compute[model] = scaled;
    }
    compute_source += "measured (" + calibration_file + ")";
    if (speedup != 1) compute_source += " divided by " + std::to_string(speedup);
  }
  for (const auto& item : compute_flags) {
    const auto [model, values] = split_assignment(item, "compute");
    double fixed_ms = -1, per_sample_ms = -1;
    char tail = 0;
    SYNCBN_CHECK(std::sscanf(values.c_str(), "%lf,%lf%c", &fixed_ms, &per_sample_ms, &tail) == 2 &&
                     fixed_ms >= 0 && per_sample_ms >= 0,
                 "--compute '", item, "': expected MODEL=FIXED_MS,PER_SAMPLE_MS (both >= 0)");
    spec.compute[model] = profile_from_total({fixed_ms * 1e-3, per_sample_ms * 1e-3});
    compute_source += (compute_source.empty() ? "" : "; ") + std::string("assumed for ") + model +
                      ": " + values + " ms";
  }
  SYNCBN_CHECK(!spec.compute.empty(), "project needs --calibration or --compute");
  if (spec.models.empty()) {
    for (const auto& [model, compute] : spec.compute) spec.models.push_back(model);
  }
  std::string text = "Compute: " + compute_source + ".\n" + projection_markdown(spec);
  write_output(out, text);
  return 0;
}

void usage(std::ostream& out) {
  out << "usage: syncbn-model calibrate|predict|project [options]   (--help after a command "
         "lists its options)\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      usage(std::cerr);
      return 2;
    }
    const std::string command = argv[1];
    if (command == "--help" || command == "-h") {
      usage(std::cout);
      return 0;
    }
    if (command == "calibrate") return calibrate(argc - 1, argv + 1);
    if (command == "predict") return predict(argc - 1, argv + 1);
    if (command == "project") return project(argc - 1, argv + 1);
    std::cerr << "syncbn-model: unknown command '" << command << "'\n";
    usage(std::cerr);
    return 2;
  } catch (const po::error& e) {
    std::cerr << "syncbn-model: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "syncbn-model: " << e.what() << "\n";
    return 1;
  }
}
