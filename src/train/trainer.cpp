#include "syncbn/train/trainer.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <type_traits>

#include "distributed/comm_watchdog.h"
#include "syncbn/data/dataset.h"
#include "syncbn/data/idx.h"
#include "syncbn/data/loader.h"
#include "syncbn/data/sampler.h"
#include "syncbn/data/synthetic.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/consistency.h"
#include "syncbn/distributed/data_parallel.h"
#include "syncbn/distributed/nccl_communicator.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/optim/lr_schedule.h"
#include "syncbn/optim/sgd.h"
#include "syncbn/train/checkpoint.h"
#include "syncbn/train/safetensors.h"
#include "util/clock.h"
#include "util/format.h"

namespace syncbn::train {

namespace {

std::string join_shape(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  return out.str();
}

struct Data {
  data::Dataset train, test;
};

Data load_data(const TrainConfig& c) {
  if (c.dataset == "fashion-mnist") {
    return {data::load_fashion_mnist(c.data_dir, true),
            data::load_fashion_mnist(c.data_dir, false)};
  }
  data::SyntheticOptions o;
  o.samples(c.synthetic_samples);
  o.classes(c.synthetic_classes);
  o.channels(c.synthetic_shape[0]);
  o.height(c.synthetic_shape[1]);
  o.width(c.synthetic_shape[2]);
  o.seed(c.seed);
  data::SyntheticOptions test_options = o;
  test_options.samples(std::max<int64_t>(1, o.samples() / 5));
  return {data::make_synthetic(o, true), data::make_synthetic(test_options, false)};
}

// The communicator for collectives on `device` tensors: NCCL for CUDA where this build has it,
// else the MPI world (which stages device memory through the host).
std::shared_ptr<dist::Communicator> device_communicator(
    const std::shared_ptr<dist::Communicator>& world, Device device) {
  if (!device.is_cuda() || !dist::nccl_available()) return world;
  // SyncBN and the gradient buckets use two NCCL communicators at once; implicit launch order
  // keeps their kernels from deadlocking on the GPU (the user's setting wins).
  setenv("NCCL_LAUNCH_ORDER_IMPLICIT", "1", /*overwrite=*/0);
  return dist::make_nccl_communicator(world, device.index);
}

// The group this rank's SyncBatchNorm layers synchronise over: the whole world, or k
// consecutive ranks. Always a communicator of its own, so that SyncBN's small allreduces in
// the middle of backward never queue behind a gradient bucket on the same communicator.
std::shared_ptr<dist::Communicator> sync_group(const TrainConfig& c,
                                               const std::shared_ptr<dist::Communicator>& comm) {
  const int64_t k = c.sync_group_size == 0 ? comm->size() : c.sync_group_size;
  SYNCBN_CHECK(comm->size() % k == 0, "--sync-group-size ", k,
               " does not divide the number of ranks ", comm->size());
  return comm->split(static_cast<int>(comm->rank() / k), comm->rank());
}

struct EvalResult {
  double loss = 0, accuracy = 0;
};

// Test loss and accuracy over the whole test split: each rank evaluates a contiguous shard and
// one allreduce sums [loss * n, correct, n].
EvalResult evaluate(nn::Module& model, const data::Dataset& test, dist::Communicator& world,
                    int64_t chunk, Device device) {
  model.eval();
  const auto [begin, end] = data::shard_range(test.size(), world.size(), world.rank());
  nn::CrossEntropyLoss criterion;
  double totals[3] = {0, 0, 0};
  data::for_each_chunk(
      test, begin, end, chunk,
      [&](const data::Batch& batch) {
        const double loss = criterion.forward(model.forward(batch.images), batch.labels);
        totals[0] += loss * static_cast<double>(batch.size());
        totals[1] += static_cast<double>(criterion.correct());
        totals[2] += static_cast<double>(batch.size());
      },
      device);
  world.allreduce_sum(totals, 3, dist::DataType::kFloat64);
  model.train();
  return {totals[0] / std::max(1.0, totals[2]), totals[1] / std::max(1.0, totals[2])};
}

}  // namespace

std::vector<std::pair<std::string, std::string>> TrainConfig::settings() const {
  // Shortest text that reads back to the same value ("0.05", not "0.050000000000000003").
  auto str = [](auto v) -> std::string {
    if constexpr (std::is_same_v<decltype(v), bool>) {
      return v ? "true" : "false";
    } else if constexpr (std::is_floating_point_v<decltype(v)>) {
      return shortest_repr(v);
    } else {
      return std::to_string(v);
    }
  };
  return {{"model", model},
          {"norm", norm},
          {"sync-group-size", str(sync_group_size)},
          {"dataset", dataset},
          {"synthetic-samples", str(synthetic_samples)},
          {"synthetic-classes", str(synthetic_classes)},
          {"synthetic-shape", join_shape(synthetic_shape)},
          {"epochs", str(epochs)},
          {"steps", str(steps)},
          {"batch-size", str(batch_size)},
          {"lr", str(lr)},
          {"scale-lr", str(scale_lr)},
          {"momentum", str(momentum)},
          {"nesterov", str(nesterov)},
          {"weight-decay", str(weight_decay)},
          {"decay-norm-and-bias", str(decay_norm_and_bias)},
          {"schedule", schedule},
          {"warmup-epochs", str(warmup_epochs)},
          {"init", init},
          {"seed", str(seed)},
          {"broadcast-buffers", str(broadcast_buffers)},
          {"bucket-kib", str(first_bucket_kib) + "," + str(bucket_kib)},
          {"device", device}};
}

void TrainConfig::validate() const {
  SYNCBN_CHECK(batch_size > 0, "--batch-size must be a positive integer, got ", batch_size);
  SYNCBN_CHECK(epochs > 0, "--epochs must be a positive integer, got ", epochs);
  SYNCBN_CHECK(steps >= 0, "--steps must be 0 (no cap) or positive, got ", steps);
  SYNCBN_CHECK(std::isfinite(lr) && lr >= 0, "--lr must be a non-negative number, got ", lr);
  SYNCBN_CHECK(std::isfinite(momentum) && momentum >= 0, "--momentum must be >= 0, got ", momentum);
  SYNCBN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0,
               "--weight-decay must be >= 0, got ", weight_decay);
  SYNCBN_CHECK(warmup_epochs >= 0, "--warmup-epochs must be >= 0, got ", warmup_epochs);
  SYNCBN_CHECK(sync_group_size >= 0, "--sync-group-size must be >= 0, got ", sync_group_size);
  SYNCBN_CHECK(eval_batch_size > 0, "--eval-batch-size must be positive, got ", eval_batch_size);
  SYNCBN_CHECK(first_bucket_kib > 0 && bucket_kib > 0, "bucket sizes must be positive");
  SYNCBN_CHECK(dataset == "fashion-mnist" || dataset == "synthetic", "unknown dataset '", dataset,
               "': expected fashion-mnist or synthetic");
  SYNCBN_CHECK(synthetic_shape.size() == 3, "--synthetic-shape must be C,H,W, got '",
               join_shape(synthetic_shape), "'");
  bool known_model = false;
  for (const auto& name : nn::model_names()) known_model |= name == model;
  SYNCBN_CHECK(known_model, "unknown model '", model, "': expected one of mlp, cnn, resnet");
  nn::parse_norm_kind(norm);
  nn::parse_init_scheme(init);
  optim::parse_schedule_kind(schedule);
  SYNCBN_CHECK(device == "auto" || device == "cpu" || device == "cuda", "unknown device '", device,
               "': expected auto, cpu or cuda");
}

Device resolve_device(const std::string& name, int local_rank) {
  const int gpus = cuda_device_count();
  if (name == "cpu" || (name == "auto" && gpus == 0)) return Device::cpu();
  SYNCBN_CHECK(cuda_compiled(),
               "--device cuda: this build has no CUDA backend (no CUDA toolkit "
               "was found at configure time)");
  SYNCBN_CHECK(gpus > 0,
               "--device cuda: no CUDA device is visible (check the driver and "
               "CUDA_VISIBLE_DEVICES)");
  return Device::cuda(local_rank % gpus);
}

TrainResult run_training(const TrainConfig& config, std::shared_ptr<dist::Communicator> world) {
  config.validate();
  dist::check_consistent(*world, config.settings(), "training configuration");
  const bool leader = world->rank() == 0;
  const Device device = resolve_device(config.device, world->local_rank());
  set_current_device(device);

  Data data = load_data(config);
  // A rank with fewer samples runs out of batches first and waits forever in a collective the
  // others never join; one with other data trains silently wrong. Both fail here, naming it.
  dist::check_same_data(*world,
                        {{"training", data.train.size(), data::fingerprint(data.train)},
                         {"test", data.test.size(), data::fingerprint(data.test)}},
                        "training data");

  nn::ModelOptions model_options;
  model_options.name(config.model);
  model_options.norm(nn::parse_norm_kind(config.norm));
  model_options.in_channels(data.train.images.size(1));
  model_options.height(data.train.images.size(2));
  model_options.width(data.train.images.size(3));
  model_options.num_classes(data.train.num_classes);
  model_options.seed(config.seed);
  const std::shared_ptr<dist::Communicator> comm = device_communicator(world, device);
  if (model_options.norm() == nn::NormKind::kSyncBatch)
    model_options.sync_group(sync_group(config, comm));
  std::shared_ptr<nn::Module> model = nn::make_model(model_options);
  nn::initialize(*model, nn::parse_init_scheme(config.init), config.seed);
  model->to(device);

  dist::DataParallelOptions dp_options;
  dp_options.first_bucket_bytes(config.first_bucket_kib * 1024);
  dp_options.bucket_bytes(config.bucket_kib * 1024);
  dp_options.broadcast_buffers(config.broadcast_buffers);
  dist::DataParallel ddp(model, comm, dp_options);

  data::DistributedSampler sampler(data.train.size(), config.batch_size, world->size(),
                                   world->rank(), config.seed);
  data::Loader loader(data.train, sampler, device);
  const int64_t steps_per_epoch = loader.steps_per_epoch();
  const int64_t global_batch = sampler.global_batch_size();

  optim::SgdOptions sgd_options;
  sgd_options.lr(config.scale_lr ? optim::scaled_lr(config.lr, global_batch) : config.lr);
  sgd_options.momentum(config.momentum);
  sgd_options.nesterov(config.nesterov);
  sgd_options.weight_decay(config.weight_decay);
  sgd_options.decay_norm_and_bias(config.decay_norm_and_bias);
  optim::Sgd optimizer(model->parameters(), sgd_options);

  optim::LrScheduleOptions schedule;
  schedule.base_lr(sgd_options.lr());
  schedule.kind(optim::parse_schedule_kind(config.schedule));
  schedule.steps_per_epoch(steps_per_epoch);
  schedule.total_epochs(config.epochs);
  schedule.warmup_epochs(config.warmup_epochs);

  if (leader) {
    std::printf(
        "syncbn-train: %s + %s on %s, %d rank(s) on %s, batch %lld per rank = global "
        "batch %lld, %lld steps/epoch, lr %.4g\n",
        config.model.c_str(), config.norm.c_str(), data.train.name.c_str(), world->size(),
        device.is_cpu() ? "cpu" : "cuda", static_cast<long long>(config.batch_size),
        static_cast<long long>(global_batch), static_cast<long long>(steps_per_epoch),
        sgd_options.lr());
    std::fflush(stdout);
  }

  TrainResult result;
  nn::CrossEntropyLoss criterion;
  model->train();
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    if (config.steps > 0 && result.steps >= config.steps) break;
    loader.set_epoch(epoch);
    ProgressBar bar(leader && config.progress, epoch + 1, config.epochs, steps_per_epoch);
    // Local sums of [loss * n, correct, n], reduced once at the end of the epoch.
    double totals[3] = {0, 0, 0};
    const double start = now_seconds();
    int64_t step = 0;
    double lr = sgd_options.lr();
    for (; step < steps_per_epoch; ++step) {
      if (config.steps > 0 && result.steps >= config.steps) break;
      dist::set_current_step(result.steps + 1);  // 1-based; a communication timeout names it
      const data::Batch& batch = loader.batch(step);
      lr = optim::lr_at(schedule, result.steps);
      optimizer.set_lr(lr);
      optimizer.zero_grad();
      Tensor logits = ddp.forward(batch.images);
      const double loss = criterion.forward(logits, batch.labels);
      ddp.backward(criterion.backward());
      optimizer.step();
      ++result.steps;
      totals[0] += loss * static_cast<double>(batch.size());
      totals[1] += static_cast<double>(criterion.correct());
      totals[2] += static_cast<double>(batch.size());
      const double elapsed = now_seconds() - start;
      bar.update(step + 1, totals[0] / std::max(1.0, totals[2]),
                 totals[1] / std::max(1.0, totals[2]),
                 static_cast<double>((step + 1) * global_batch) / std::max(1e-9, elapsed));
    }
    const double seconds = now_seconds() - start;
    bar.finish();
    world->allreduce_sum(totals, 3, dist::DataType::kFloat64);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.step = result.steps;
    m.train_loss = totals[0] / std::max(1.0, totals[2]);
    m.train_accuracy = totals[1] / std::max(1.0, totals[2]);
    const EvalResult eval = evaluate(*model, data.test, *world, config.eval_batch_size, device);
    m.test_loss = eval.loss;
    m.test_accuracy = eval.accuracy;
    m.images_per_second = totals[2] / std::max(1e-9, seconds);
    m.seconds = seconds;
    m.lr = lr;
    m.world_size = world->size();
    m.batch_size = config.batch_size;
    result.epochs.push_back(m);
    if (leader) {
      std::printf("%s\n", summary_line(m, config.epochs).c_str());
      std::fflush(stdout);
      if (!config.metrics.empty()) append_metrics(config.metrics, m);
    }
  }

  if (!config.save.empty() && leader) {
    const NamedTensors state = model->state_dict();
    std::map<std::string, std::string> metadata = integrity_metadata(state);
    metadata.insert({{"model", config.model},
                     {"norm", config.norm},
                     {"steps", std::to_string(result.steps)},
                     {"world_size", std::to_string(world->size())}});
    save_safetensors(config.save, state, metadata);
    std::printf("saved %s\n", config.save.c_str());
  }
  world->barrier();  // nobody exits (and tears MPI down) while rank 0 still writes
  dist::set_current_step(-1);
  return result;
}

}  // namespace syncbn::train
