// syncbn-bench-allreduce: allreduce time against message size, under mpirun, for fitting the
// alpha-beta network model (syncbn-model calibrate; docs/studies/step-model.md).
//
// For each size (float32, --min-bytes to --max-bytes by a factor of 4): --iterations timed
// allreduces after --warmup untimed ones, each started right after a barrier, so that ranks
// enter together as they do in a training step. A size's time is the mean over iterations on
// the slowest rank. Correctness in the same run: every rank contributes rank + 1 in every
// element, so every element must come back as P(P+1)/2; "#wrong" counts the elements that do
// not, and any wrong element fails the program.
// Prints a table on rank 0 and one JSON line per size:
//   {"bench": "allreduce", "ranks": P, "bytes": n, "seconds": t, "algbw_gbs": n/t,
//    "busbw_gbs": n/t * 2(P-1)/P, "wrong": 0}
// (busbw as nccl-tests' doc/PERFORMANCE.md defines it for allreduce).
//   mpirun -np 4 syncbn-bench-allreduce [--min-bytes 8] [--max-bytes 4194304] [--iterations 20]
#include <boost/program_options.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "bench_flags.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "util/clock.h"

namespace po = boost::program_options;
using namespace syncbn;

namespace {

struct SizeResult {
  double seconds = 0;  // mean per allreduce, slowest rank
  int64_t wrong = 0;   // elements with a wrong sum, over all ranks
};

SizeResult time_allreduce(dist::Communicator& world, int64_t count, int64_t warmup,
                          int64_t iterations) {
  const int P = world.size();
  const float expected = static_cast<float>(P) * static_cast<float>(P + 1) / 2;
  std::vector<float> data(static_cast<std::size_t>(count));
  double seconds = 0, wrong = 0;
  for (int64_t i = 0; i < warmup + iterations; ++i) {
    std::fill(data.begin(), data.end(), static_cast<float>(world.rank() + 1));
    world.barrier();
    const double start = now_seconds();
    world.allreduce_sum(data.data(), count, dist::DataType::kFloat32);
    if (i >= warmup) seconds += now_seconds() - start;
    for (const float v : data) wrong += v != expected;
  }
  double local[2] = {seconds / static_cast<double>(iterations), wrong};
  std::vector<double> all(2 * static_cast<std::size_t>(P));
  world.allgather(local, all.data(), 2, dist::DataType::kFloat64);
  SizeResult result;
  for (int r = 0; r < P; ++r) {
    result.seconds = std::max(result.seconds, all[2 * r]);
    result.wrong += static_cast<int64_t>(all[2 * r + 1]);
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime;
  return dist::run_and_abort_on_error([&] {
    auto world = runtime.world();
    int64_t min_bytes = 8, max_bytes = int64_t{4} << 20, warmup = 2, iterations = 20;
    po::options_description options("syncbn-bench-allreduce options");
    options.add_options()("help,h", "show this help")(
        "min-bytes", po::value(&min_bytes)->default_value(min_bytes),
        "smallest message (bytes per rank, a multiple of 4)")(
        "max-bytes", po::value(&max_bytes)->default_value(max_bytes),
        "largest message; sizes grow by a factor of 4")(
        "warmup", po::value(&warmup)->default_value(warmup), "untimed allreduces per size")(
        "iterations", po::value(&iterations)->default_value(iterations),
        "timed allreduces per size");
    po::variables_map vm;
    if (!bench::parse_flags(argc, argv, options, world->rank() == 0, vm)) return 0;
    SYNCBN_CHECK(min_bytes >= 4 && min_bytes % 4 == 0 && max_bytes >= min_bytes,
                 "--min-bytes must be a positive multiple of 4 and at most --max-bytes");
    SYNCBN_CHECK(warmup >= 0 && iterations > 0, "--warmup >= 0 and --iterations > 0 needed");
    const int P = world->size();
    if (world->rank() == 0) {
      std::printf("# allreduce (sum, float32) over %d rank(s); time on the slowest rank\n", P);
      std::printf("%12s %12s %12s %12s %8s\n", "bytes", "time_us", "algbw_GB/s", "busbw_GB/s",
                  "#wrong");
    }
    int64_t wrong = 0;
    for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
      const SizeResult r = time_allreduce(*world, bytes / 4, warmup, iterations);
      wrong += r.wrong;
      const double algbw = static_cast<double>(bytes) / r.seconds / 1e9;
      const double busbw = algbw * 2 * (P - 1) / P;
      if (world->rank() == 0) {
        std::printf("%12lld %12.1f %12.4f %12.4f %8lld\n", static_cast<long long>(bytes),
                    1e6 * r.seconds, algbw, busbw, static_cast<long long>(r.wrong));
        const nlohmann::ordered_json row = {
            {"bench", "allreduce"}, {"ranks", P},         {"bytes", bytes},  {"seconds", r.seconds},
            {"algbw_gbs", algbw},   {"busbw_gbs", busbw}, {"wrong", r.wrong}};
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
      }
    }
    SYNCBN_CHECK(wrong == 0, wrong, " allreduced elements had a wrong sum");
    return 0;
  });
}
