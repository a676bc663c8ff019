// syncbn-bench-timing: what measuring "where the time goes" costs the training step.
//
// Runs syncbn-train's own loop (train::run_training, synthetic data, a fixed number of steps)
// again and again in this process, with timing on (the default) and off (--no-timing) in
// alternating pairs (on off, off on, on off, ...), so that a change in the machine's load hits
// both alike; each run's training seconds per step (evaluation excluded) is one sample. Process
// starts, data generation and evaluation stay out of the samples, which is what makes the
// comparison sharp enough on a shared machine. The estimate of the cost is the median over the
// pairs of on/off: 1.000 is free. The same run checks the measurement: every timed run reports
// the SyncBN allreduces the model must make (2 per BN layer per step with P > 1), every untimed
// run none ("#wrong" counts the runs that do not, the warm-up run's included; any makes the
// benchmark exit non-zero).
// A second estimate, immune to the machine's load: the instrumentation of one step (the timer's
// laps and the hooks of as many SyncBN allreduces and buckets as the model makes per step) run
// alone in a tight loop, in microseconds per step ("hook_us"), and as a share of the untimed
// median step ("hook_share").
// Prints a table on rank 0 and one JSON line per model.
//   mpirun -np 2 syncbn-bench-timing [--models mlp,cnn] [--norm syncbn] [--batch-size 32]
//                                    [--steps 30] [--pairs 10] [--timeline]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/models.h"
#include "syncbn/profile.h"
#include "syncbn/threads.h"
#include "syncbn/train/trainer.h"
#include "train/step_timer.h"
#include "util/clock.h"

namespace po = boost::program_options;
using namespace syncbn;

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

int64_t batch_norm_layers(const nn::Module& module) {
  int64_t layers = dynamic_cast<const nn::BatchNorm*>(&module) != nullptr ? 1 : 0;
  for (const auto& [name, child] : module.children()) layers += batch_norm_layers(*child);
  return layers;
}

// run_training prints its progress lines on rank 0; the table is what this program prints.
class QuietStdout {
 public:
  QuietStdout() : saved_(dup(STDOUT_FILENO)) {
    std::fflush(stdout);
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    close(null);
  }
  ~QuietStdout() {
    std::fflush(stdout);
    dup2(saved_, STDOUT_FILENO);
    close(saved_);
  }
  QuietStdout(const QuietStdout&) = delete;
  QuietStdout& operator=(const QuietStdout&) = delete;

 private:
  int saved_;
};

struct Sample {
  double seconds_per_step = 0;
  bool wrong = false;
  int64_t syncbn_calls = 0, grad_calls = 0;  // in the run (timed runs only)
};

Sample run_once(train::TrainConfig config, bool timing, int64_t expected_syncbn_calls,
                const std::shared_ptr<dist::Communicator>& world) {
  config.timing = timing;
  if (!timing) config.timeline.clear();
  train::TrainResult result;
  {
    const QuietStdout quiet;
    result = train::run_training(config, world);
  }
  const train::EpochMetrics& m = result.epochs.at(0);
  Sample sample;
  sample.seconds_per_step = m.seconds / static_cast<double>(m.steps_in_epoch);
  sample.wrong = timing ? !m.has_timing || m.collectives.syncbn_allreduce != expected_syncbn_calls
                        : m.has_timing;
  sample.syncbn_calls = m.collectives.syncbn_allreduce;
  sample.grad_calls = m.collectives.grad_allreduce;
  return sample;
}

// The instrumentation of one step alone, in a tight loop: the timer's laps and the hooks of
// `syncbn_calls` SyncBN allreduces and `grad_calls` gradient buckets (one launch, two polls
// each), with the recorder installed and no timeline. Microseconds per step, the best of 5.
double hook_microseconds_per_step(const train::TrainConfig& config, dist::Communicator& world,
                                  int64_t syncbn_calls, int64_t grad_calls) {
  nn::ModelOptions model_options;
  model_options.name(config.model).norm(nn::NormKind::kBatch);
  const auto model = nn::make_model(model_options);
  train::TrainConfig timed = config;
  timed.timing = true;
  timed.timeline.clear();
  train::StepTimer timer(timed, world, {&world}, *model, 0);
  timer.begin_epoch();
  constexpr int kSteps = 20000;
  double best = 1e30;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const double start = now_seconds();
    for (int step = 0; step < kSteps; ++step) {
      timer.begin_step();
      timer.lap(train::Phase::kData);
      timer.lap(train::Phase::kOptimizer);
      for (int64_t c = 0; c < syncbn_calls; ++c) {
        const profile::ScopedCollective timed_call(profile::Collective::kSyncBn, "allreduce", 8);
      }
      timer.lap(train::Phase::kForward);
      for (int64_t b = 0; b < grad_calls; ++b) {
        profile::bucket_launched(static_cast<std::size_t>(b), 4);
        profile::bucket_completed(static_cast<std::size_t>(b));
        profile::bucket_completed(static_cast<std::size_t>(b));
      }
      timer.lap_backward(0.0);
      timer.end_step();
    }
    best = std::min(best, (now_seconds() - start) / kSteps);
  }
  return 1e6 * best;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime;
  return dist::run_and_abort_on_error([&] {
    auto world = runtime.world();
    const bool leader = world->rank() == 0;
    std::string models = "mlp,cnn", norm = "syncbn";
    int64_t batch = 32, steps = 30, pairs = 10;
    int threads = 1;
    bool timeline = false;
    po::options_description options("syncbn-bench-timing options");
    options.add_options()("help,h", "show this help")(
        "models", po::value(&models)->default_value(models), "comma-separated: mlp, cnn, resnet")(
        "norm", po::value(&norm)->default_value(norm), "as syncbn-train --norm")(
        "batch-size", po::value(&batch)->default_value(batch), "per rank")(
        "steps", po::value(&steps)->default_value(steps), "training steps per run")(
        "pairs", po::value(&pairs)->default_value(pairs), "pairs of runs (on, off) per model")(
        "threads", po::value(&threads)->default_value(threads), "CPU threads per rank")(
        "timeline", po::bool_switch(&timeline),
        "timed runs also write a trace of steps 6..25 (to a temporary file): the window's cost");
    po::variables_map values;
    if (!bench::parse_flags(argc, argv, options, leader, values)) return 0;
    SYNCBN_CHECK(steps > 0 && pairs > 0 && batch > 0,
                 "--steps, --pairs and --batch-size must be "
                 "positive");
    set_num_threads(threads);
    const std::string trace_path = (std::filesystem::temp_directory_path() /
                                    ("syncbn-bench-timing." + std::to_string(getpid()) + ".json"))
                                       .string();

    if (leader) {
      std::printf("# %d rank(s), %lld steps per run, %lld pairs (on/off alternating), batch %lld\n",
                  world->size(), static_cast<long long>(steps), static_cast<long long>(pairs),
                  static_cast<long long>(batch));
      std::printf("%-7s %-7s %11s %11s %11s %11s %9s %9s %10s %7s\n", "model", "norm", "min_on_ms",
                  "min_off_ms", "med_on_ms", "med_off_ms", "ratio", "hook_us", "hook_share",
                  "#wrong");
    }
    std::vector<std::string> json_lines;
    int total_wrong = 0;  // over the models: any makes the benchmark fail, after its report
    std::stringstream list(models);
    for (std::string model; std::getline(list, model, ',');) {
      train::TrainConfig config;
      config.model = model;
      config.norm = norm;
      config.dataset = "synthetic";
      config.synthetic_samples = batch * world->size() * steps;  // one epoch of `steps`
      config.batch_size = batch;
      config.steps = steps;
      config.progress = false;
      config.device = "cpu";
      if (timeline) config.timeline = trace_path;
      config.timeline_start = 5;
      nn::ModelOptions model_options;
      model_options.name(model).norm(nn::NormKind::kBatch);
      const int64_t layers = batch_norm_layers(*nn::make_model(model_options));
      const int64_t expected_calls = norm == "syncbn" && world->size() > 1 ? 2 * layers * steps : 0;

      std::vector<double> on, off, ratios;
      // Warm-up (caches, allocator, pages), and the calls per step of the hook measurement.
      const Sample first = run_once(config, true, expected_calls, world);
      int wrong = first.wrong;
      for (int64_t pair = 0; pair < pairs; ++pair) {
        Sample a, b;
        if (pair % 2 == 0) {
          a = run_once(config, true, expected_calls, world);
          b = run_once(config, false, expected_calls, world);
        } else {
          b = run_once(config, false, expected_calls, world);
          a = run_once(config, true, expected_calls, world);
        }
        on.push_back(a.seconds_per_step);
        off.push_back(b.seconds_per_step);
        ratios.push_back(a.seconds_per_step / b.seconds_per_step);
        wrong += a.wrong + b.wrong;
      }
      const double hook_us = hook_microseconds_per_step(config, *world, first.syncbn_calls / steps,
                                                        first.grad_calls / steps);
      const nlohmann::ordered_json row = {
          {"model", model},
          {"norm", norm},
          {"ranks", world->size()},
          {"steps", steps},
          {"pairs", pairs},
          {"min_on_ms", 1e3 * *std::min_element(on.begin(), on.end())},
          {"min_off_ms", 1e3 * *std::min_element(off.begin(), off.end())},
          {"median_on_ms", 1e3 * median(on)},
          {"median_off_ms", 1e3 * median(off)},
          {"median_pair_ratio", median(ratios)},
          {"hook_us_per_step", hook_us},
          {"hook_share", 1e-6 * hook_us / median(off)},
          {"wrong", wrong}};
      if (leader) {
        std::printf("%-7s %-7s %11.3f %11.3f %11.3f %11.3f %9.4f %9.2f %10.5f %7d\n", model.c_str(),
                    norm.c_str(), row["min_on_ms"].get<double>(), row["min_off_ms"].get<double>(),
                    row["median_on_ms"].get<double>(), row["median_off_ms"].get<double>(),
                    median(ratios), hook_us, row["hook_share"].get<double>(), wrong);
        std::fflush(stdout);
      }
      json_lines.push_back(row.dump());
      total_wrong += wrong;
    }
    if (leader) {
      for (const auto& line : json_lines) std::printf("%s\n", line.c_str());
      if (timeline) std::filesystem::remove(trace_path);
    }
    // Summed over the ranks, so that all of them fail alike.
    double all_wrong = total_wrong;
    world->allreduce_sum(&all_wrong, 1, dist::DataType::kFloat64);
    SYNCBN_CHECK(all_wrong == 0, static_cast<int64_t>(all_wrong),
                 " run(s) did not report the SyncBN allreduces expected of them (\"#wrong\")");
    return 0;
  });
}
