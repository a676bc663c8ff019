// syncbn-bench-comm: the communication of one data-parallel training step, under mpirun.
//
// For each model: the collectives and bytes of SyncBatchNorm (one allreduce of 2C+1 doubles
// forward and one of 2C doubles backward per layer) against PyTorch's SyncBatchNorm scheme (an
// allgather of mean, invstd and count, 2C+1 floats from EVERY rank, forward; an allreduce of 2C
// floats backward), the gradient buckets of DataParallel, and the share of gradient
// communication hidden behind backward:
//   hidden = 1 - (time waiting in finish() after backward) / (time of the same allreduces
//   run alone, blocking).
// Prints a table on rank 0 and one JSON line per model.
//   mpirun -np 4 syncbn-bench-comm [--models cnn,resnet,mlp] [--batch-size 16] [--steps 5]
//                                  [--bucket-kib K]
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench_flags.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/data_parallel.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/models.h"
#include "syncbn/nn/sync_batch_norm.h"
#include "syncbn/random.h"
#include "syncbn/threads.h"
#include "util/clock.h"

namespace po = boost::program_options;
using namespace syncbn;

namespace {

struct SyncBnShape {
  int64_t layers = 0, channel_sum = 0;
};

SyncBnShape sync_bn_layers(const nn::Module& module) {
  SyncBnShape shape;
  if (auto* bn = dynamic_cast<const nn::SyncBatchNorm*>(&module)) {
    shape.layers = 1;
    shape.channel_sum = bn->options().num_features();
  }
  for (const auto& [name, child] : module.children()) {
    const SyncBnShape inner = sync_bn_layers(*child);
    shape.layers += inner.layers;
    shape.channel_sum += inner.channel_sum;
  }
  return shape;
}

void bench_model(const std::string& name, int64_t batch, int64_t steps, int64_t bucket_kib,
                 const std::shared_ptr<dist::Communicator>& world) {
  const int P = world->size();
  // SyncBN gets its own communicator over the same ranks, so that its counters are its own.
  auto sync_group = world->split(0, world->rank());
  nn::ModelOptions options;
  options.name(name);
  options.norm(nn::NormKind::kSyncBatch);
  options.sync_group(sync_group);
  auto model = nn::make_model(options);
  nn::initialize(*model, nn::InitScheme::kKaiming, 1);
  dist::DataParallelOptions ddp_options;
  if (bucket_kib > 0)
    ddp_options.first_bucket_bytes(bucket_kib * 1024).bucket_bytes(bucket_kib * 1024);
  dist::DataParallel ddp(model, world, ddp_options);

  Generator gen(derive_seed(7, world->rank()));
  std::vector<float> values(static_cast<std::size_t>(batch * 28 * 28));
  for (auto& v : values) v = gen.normal(0.0f, 1.0f);
  const Tensor x = Tensor::from_vector({batch, 1, 28, 28}, values);
  std::vector<int32_t> labels(static_cast<std::size_t>(batch));
  for (auto& l : labels) l = static_cast<int32_t>(gen.below(10));
  nn::CrossEntropyLoss loss;

  double wait = 0, backward = 0;
  for (int64_t step = 0; step <= steps; ++step) {  // step 0 warms up
    model->zero_grad();
    sync_group->reset_stats();
    world->reset_stats();
    loss.forward(ddp.forward(x), labels);
    // Ranks enter backward together, so that waiting in finish() measures communication left
    // exposed, not the skew between ranks (large when ranks outnumber cores).
    world->barrier();
    ddp.backward(loss.backward());
    if (step > 0) {
      wait += ddp.overlap().finish_wait_seconds;
      backward += ddp.overlap().backward_seconds;
    }
  }
  const dist::CommStats sync_stats = sync_group->stats();
  const dist::CommStats grad_stats = world->stats();

  // The same gradient allreduces alone, blocking, after a barrier.
  std::vector<Tensor> buckets;
  for (std::size_t bytes : ddp.bucket_sizes()) {
    buckets.push_back(Tensor::zeros({static_cast<int64_t>(bytes / sizeof(float))}));
  }
  double alone = 0;
  for (int64_t step = 0; step <= steps; ++step) {
    world->barrier();
    const double start = now_seconds();
    for (auto& bucket : buckets) world->allreduce_sum(bucket);
    if (step > 0) alone += now_seconds() - start;
  }
  // Every rank's times: report the slowest rank (the step waits for it).
  double times[3] = {wait, backward, alone};
  std::vector<double> all(3 * static_cast<std::size_t>(P));
  world->allgather(times, all.data(), 3, dist::DataType::kFloat64);
  double max_wait = 0, max_backward = 0, max_alone = 0;
  for (int r = 0; r < P; ++r) {
    max_wait = std::max(max_wait, all[3 * r] / steps);
    max_backward = std::max(max_backward, all[3 * r + 1] / steps);
    max_alone = std::max(max_alone, all[3 * r + 2] / steps);
  }
  const double hidden =
      P > 1 && max_alone > 0 ? std::clamp(1.0 - max_wait / max_alone, 0.0, 1.0) : 0.0;

  const SyncBnShape shape = sync_bn_layers(*model);
  // PyTorch 1.13 SyncBatchNorm per layer: forward all_gather of [mean(C), invstd(C), count(1)]
  // float32 from every rank (each rank receives P * (2C+1) floats), backward all_reduce of
  // [sum_dy(C), sum_dy_xmu(C)] float32.
  const int64_t torch_calls = 2 * shape.layers;
  const int64_t torch_bytes =
      4 * (P * (2 * shape.channel_sum + shape.layers)) + 4 * 2 * shape.channel_sum;
  if (world->rank() == 0) {
    std::printf(
        "%-7s %3d %6lld %9lld %11lld %11lld %11lld %8lld %12lld %9.2f %9.2f %9.2f %7.0f%%\n",
        name.c_str(), P, static_cast<long long>(shape.layers),
        static_cast<long long>(sync_stats.allreduce_calls + sync_stats.allgather_calls),
        static_cast<long long>(sync_stats.allreduce_bytes + sync_stats.allgather_bytes),
        static_cast<long long>(torch_calls), static_cast<long long>(torch_bytes),
        static_cast<long long>(grad_stats.allreduce_calls),
        static_cast<long long>(grad_stats.allreduce_bytes), 1e3 * max_backward, 1e3 * max_alone,
        1e3 * max_wait, 100 * hidden);
    const nlohmann::ordered_json row = {
        {"bench", "comm"},
        {"model", name},
        {"ranks", P},
        {"batch_per_rank", batch},
        {"syncbn_layers", shape.layers},
        {"syncbn_collectives", sync_stats.allreduce_calls + sync_stats.allgather_calls},
        {"syncbn_bytes", sync_stats.allreduce_bytes + sync_stats.allgather_bytes},
        {"torch_syncbn_collectives", torch_calls},
        {"torch_syncbn_bytes", torch_bytes},
        {"grad_allreduces", grad_stats.allreduce_calls},
        {"grad_bytes", grad_stats.allreduce_bytes},
        {"backward_ms", 1e3 * max_backward},
        {"grad_comm_alone_ms", 1e3 * max_alone},
        {"wait_after_backward_ms", 1e3 * max_wait},
        {"hidden_share", hidden},
    };
    std::printf("%s\n", row.dump().c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime;
  return dist::run_and_abort_on_error([&] {
    auto world = runtime.world();
    std::string models = "mlp,cnn,resnet";
    int64_t batch = 16, steps = 5, bucket_kib = 0;
    int threads = 1;
    po::options_description options("syncbn-bench-comm options");
    options.add_options()("help,h", "show this help")(
        "models", po::value(&models)->default_value(models), "comma-separated model names")(
        "batch-size", po::value(&batch)->default_value(batch), "batch per rank")(
        "steps", po::value(&steps)->default_value(steps), "timed steps (after one warm-up)")(
        "bucket-kib", po::value(&bucket_kib)->default_value(bucket_kib),
        "gradient bucket size in KiB (0 = DataParallel's 1 MiB first, then 25 MiB)")(
        "threads", po::value(&threads)->default_value(threads), "CPU threads per rank");
    po::variables_map vm;
    if (!bench::parse_flags(argc, argv, options, world->rank() == 0, vm)) return 0;
    SYNCBN_CHECK(batch > 0 && steps > 0 && threads > 0,
                 "batch-size, steps and threads must be positive");
    set_num_threads(threads);
    if (world->rank() == 0) {
      std::printf("# one training step per rank; bytes are payload bytes per rank per step\n");
      std::printf("%-7s %3s %6s %9s %11s %11s %11s %8s %12s %9s %9s %9s %8s\n", "model", "P", "BNs",
                  "sbn_colls", "sbn_bytes", "torch_colls", "torch_bytes", "grad_ar", "grad_bytes",
                  "bwd_ms", "comm_ms", "wait_ms", "hidden");
    }
    std::stringstream list(models);
    std::string name;
    while (std::getline(list, name, ',')) bench_model(name, batch, steps, bucket_kib, world);
    return 0;
  });
}
