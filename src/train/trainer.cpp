#include "syncbn/train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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
#include "syncbn/nn/dropout.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/optim/lr_schedule.h"
#include "syncbn/optim/sgd.h"
#include "syncbn/train/checkpoint.h"
#include "syncbn/train/safetensors.h"
#include "train/checkpointing.h"
#include "train/divergence.h"
#include "train/health.h"
#include "train/step_timer.h"
#include "util/checked.h"
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

// Every Dropout of `module` skips the mask seeds of `steps` training forwards (one per step).
void skip_dropout_masks(nn::Module& module, int64_t steps) {
  if (auto* dropout = dynamic_cast<nn::Dropout*>(&module)) dropout->skip_masks(steps);
  for (const auto& [name, child] : module.children()) skip_dropout_masks(*child, steps);
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

// Fails now, not after hours of training, when `path` cannot be written. --metrics is opened for
// appending (created if absent, as the first epoch would); for --save a scratch file is created
// and removed next to it, since the checkpoint is written to a temporary file and renamed.
void check_output_path(const std::string& flag, const std::string& path, bool append) {
  namespace fs = std::filesystem;
  std::error_code ec;
  SYNCBN_CHECK(!fs::is_directory(path, ec), flag, " ", path, ": is a directory, expected a file");
  const fs::path parent = fs::path(path).parent_path();
  const fs::path directory = parent.empty() ? fs::path(".") : parent;
  SYNCBN_CHECK(fs::is_directory(directory, ec), flag, " ", path, ": directory ", directory.string(),
               " does not exist");
  if (append) {
    errno = 0;
    std::FILE* file = std::fopen(path.c_str(), "a");
    SYNCBN_CHECK(file != nullptr, flag, " ", path, ": cannot open for appending (",
                 std::strerror(errno), ")");
    std::fclose(file);
    return;
  }
  const std::string scratch = path + ".write-check." + std::to_string(getpid());
  const int fd = ::open(scratch.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  SYNCBN_CHECK(fd >= 0, flag, " ", path, ": cannot create files in ", directory.string(), " (",
               std::strerror(errno), ")");
  ::close(fd);
  ::unlink(scratch.c_str());
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
          {"norm-placement", norm_placement},
          {"dropout", str(dropout)},
          {"dropout-placement", dropout_placement},
          {"on-divergence", on_divergence},
          {"health", str(health)},
          {"seed", str(seed)},
          {"broadcast-buffers", str(broadcast_buffers)},
          {"bucket-kib", str(first_bucket_kib) + "," + str(bucket_kib)},
          {"device", device},
          // Every rank joins the timing's reduction and the timeline's gather.
          {"timing", str(timing)},
          {"timeline", timeline.empty() ? "off" : str(timeline_start) + "+" + str(timeline_steps)}};
}

namespace {

// Upper bounds of the numeric flags: far beyond any real run, and low enough that the products
// built from them (epochs x steps per epoch, KiB x 1024, batch x ranks) cannot overflow.
constexpr int64_t kMaxBatch = int64_t{1} << 30;
constexpr int64_t kMaxEpochs = 1'000'000;
constexpr int64_t kMaxSteps = int64_t{1} << 50;
constexpr int64_t kMaxSamples = int64_t{1} << 40;
constexpr int64_t kMaxClasses = (int64_t{1} << 31) - 1;  // labels are int32
constexpr int64_t kMaxBucketKib = int64_t{1} << 30;      // 1 TiB
constexpr int64_t kMaxSyncGroup = int64_t{1} << 20;
constexpr int64_t kMaxTimelineSteps = 100'000;  // spans are kept in memory until the end

void check_range(const char* flag, int64_t value, int64_t low, int64_t high,
                 const char* note = "") {
  SYNCBN_CHECK(value >= low && value <= high, flag, " must be an integer in ", low, "..", high,
               note, ", got ", value);
}

void check_range(const char* flag, double value, double low, double high) {
  SYNCBN_CHECK(std::isfinite(value) && value >= low && value <= high, flag,
               " must be a finite number in [", shortest_repr(low), ", ", shortest_repr(high),
               "], got ", shortest_repr(value));
}

}  // namespace

void TrainConfig::validate() const {
  check_range("--batch-size", batch_size, 1, kMaxBatch);
  check_range("--eval-batch-size", eval_batch_size, 1, kMaxBatch);
  check_range("--epochs", epochs, 1, kMaxEpochs);
  check_range("--steps", steps, 0, kMaxSteps, " (0 = no cap)");
  check_range("--lr", lr, 0.0, 1e6);
  check_range("--momentum", momentum, 0.0, 1.0);
  check_range("--weight-decay", weight_decay, 0.0, 1e6);
  check_range("--dropout", dropout, 0.0, 0.99);  // p = 1 would zero every hidden activation
  check_range("--health", health, -1, kMaxSteps, " (-1 = off, 0 = each epoch's last step)");
  check_range("--warmup-epochs", warmup_epochs, 0.0, static_cast<double>(kMaxEpochs));
  check_range("--sync-group-size", sync_group_size, 0, kMaxSyncGroup, " (0 = all ranks)");
  check_range("--synthetic-samples", synthetic_samples, 1, kMaxSamples);
  check_range("--synthetic-classes", synthetic_classes, 2, kMaxClasses);
  check_range("--bucket-kib", bucket_kib, 1, kMaxBucketKib);
  check_range("first bucket size (KiB)", first_bucket_kib, 1, kMaxBucketKib);
  check_range("--checkpoint-every", checkpoint_every, 0, kMaxSteps, " (0 = at epoch ends)");
  check_range("--keep-checkpoints", keep_checkpoints, 1, kMaxEpochs);
  SYNCBN_CHECK(checkpoint_every == 0 || !checkpoint_dir.empty(),
               "--checkpoint-every needs --checkpoint-dir");
  check_range("--timeline-start", timeline_start, 0, kMaxSteps);
  check_range("--timeline-steps", timeline_steps, 1, kMaxTimelineSteps);
  SYNCBN_CHECK(timing || timeline.empty(),
               "--timeline needs the timing that --no-timing turns off");
  SYNCBN_CHECK(dataset == "fashion-mnist" || dataset == "synthetic", "unknown dataset ",
               quote_brief(dataset), ": expected fashion-mnist or synthetic");
  SYNCBN_CHECK(synthetic_shape.size() == 3, "--synthetic-shape must be C,H,W, got '",
               join_shape(synthetic_shape), "'");
  for (int64_t size : synthetic_shape) {
    SYNCBN_CHECK(size > 0, "--synthetic-shape must be three positive integers C,H,W, got '",
                 join_shape(synthetic_shape), "'");
  }
  // Every sample and the whole dataset (samples x C x H x W floats) must have a size.
  const int64_t sample_numel = checked_product(synthetic_shape, "--synthetic-shape C x H x W");
  checked_mul(checked_mul(synthetic_samples, sample_numel, "--synthetic-samples x C x H x W"),
              sizeof(float), "--synthetic-samples x C x H x W floats");
  bool known_model = false;
  for (const auto& name : nn::model_names()) known_model |= name == model;
  SYNCBN_CHECK(known_model, "unknown model ", quote_brief(model),
               ": expected one of mlp, cnn, resnet");
  // The parsers below quote a wrong name whole; no name is longer than this.
  for (const auto& [flag, name] : {std::pair<const char*, const std::string&>{"--norm", norm},
                                   {"--init", init},
                                   {"--schedule", schedule},
                                   {"--norm-placement", norm_placement},
                                   {"--dropout-placement", dropout_placement},
                                   {"--on-divergence", on_divergence}}) {
    SYNCBN_CHECK(name.size() <= 64, "unknown ", flag, " ", quote_brief(name));
  }
  nn::parse_norm_kind(norm);
  nn::parse_init(init);
  nn::parse_norm_placement(norm_placement);
  nn::parse_dropout_placement(dropout_placement);
  parse_on_divergence(on_divergence);
  optim::parse_schedule_kind(schedule);
  SYNCBN_CHECK(device == "auto" || device == "cpu" || device == "cuda", "unknown device ",
               quote_brief(device), ": expected auto, cpu or cuda");
}

Device resolve_device(const std::string& name, int local_rank, std::string* why) {
  std::string reason;
  Device device = Device::cpu();
  if (name == "cpu") {
    reason = "--device cpu";
  } else {
    // Throws when CUDA is installed but broken, rather than falling back to the CPU unseen.
    const int gpus = cuda_device_count();
    if (name == "auto" && gpus == 0) {
      reason = "--device auto: " + cuda_unavailable_reason();
    } else {
      SYNCBN_CHECK(cuda_compiled(),
                   "--device cuda: this build has no CUDA backend (no CUDA toolkit "
                   "was found at configure time)");
      SYNCBN_CHECK(gpus > 0, "--device cuda: ", cuda_unavailable_reason(),
                   " (check the driver and CUDA_VISIBLE_DEVICES)");
      device = Device::cuda(local_rank % gpus);
      reason = "--device " + name + ": " + std::to_string(gpus) +
               " CUDA device(s) visible, local rank " + std::to_string(local_rank) + " uses " +
               device.str();
    }
  }
  if (why != nullptr) *why = reason;
  return device;
}

TrainResult run_training(const TrainConfig& config, std::shared_ptr<dist::Communicator> world) {
  config.validate();
  dist::check_consistent(*world, config.settings(), "training configuration");
  const bool leader = world->rank() == 0;
  if (leader) {
    if (!config.save.empty()) check_output_path("--save", config.save, /*append=*/false);
    if (!config.metrics.empty()) check_output_path("--metrics", config.metrics, /*append=*/true);
    if (!config.timeline.empty()) check_output_path("--timeline", config.timeline, false);
  }
  std::string device_reason;
  const Device device = resolve_device(config.device, world->local_rank(), &device_reason);
  if (leader) std::printf("device: %s (%s)\n", device.str().c_str(), device_reason.c_str());
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
  model_options.norm_placement(nn::parse_norm_placement(config.norm_placement));
  model_options.dropout(static_cast<float>(config.dropout));
  model_options.dropout_placement(nn::parse_dropout_placement(config.dropout_placement));
  model_options.dropout_seed(derive_seed(config.seed, 0x64726f70ULL + world->rank()));
  const std::shared_ptr<dist::Communicator> comm = device_communicator(world, device);
  if (model_options.norm() == nn::NormKind::kSyncBatch)
    model_options.sync_group(sync_group(config, comm));
  std::shared_ptr<nn::Module> model = nn::make_model(model_options);
  nn::initialize(*model, nn::parse_init(config.init), config.seed);
  if (!config.init_from.empty()) {
    try {
      nn::load_state_dict(*model, load_safetensors(config.init_from));
    } catch (const Error& e) {
      SYNCBN_FAIL("--init-from ", config.init_from, ": ", e.what());
    }
  }
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

  const Settings settings = run_settings(config, data.train);
  Checkpointer checkpoints(config, *world, settings, global_batch);
  const StartPoint start_point =
      resume_training(config, *world, settings, *model, optimizer, loader.sampler());
  // Dropout's masks come from a stream that each training forward advances: a resumed run
  // continues the stream where the checkpointed run left it.
  skip_dropout_masks(*model, start_point.position.step);

  StepTimer timer(config, *world, {world.get(), comm.get(), model_options.sync_group().get()},
                  *model, start_point.position.step);
  TrainResult result;
  result.steps = start_point.position.step;
  nn::CrossEntropyLoss criterion;
  DivergenceGuard divergence(config.on_divergence, *world, config.lr);
  model->train();
  for (int64_t epoch = start_point.position.epoch; epoch < config.epochs; ++epoch) {
    if (config.steps > 0 && result.steps >= config.steps) break;
    const bool resumed_epoch = epoch == start_point.position.epoch;
    loader.set_epoch(epoch, resumed_epoch ? start_point.position.sample_offset : 0);
    const int64_t steps_in_epoch = loader.steps_in_epoch();
    ProgressBar bar(leader && config.progress, epoch + 1, config.epochs, steps_in_epoch);
    // Local sums of [loss * n, correct, n], reduced once at the end of the epoch. A resumed
    // epoch starts from the sums its checkpoint recorded (on rank 0: the reduction adds them).
    double totals[3] = {0, 0, 0};
    if (resumed_epoch && leader) std::copy_n(start_point.epoch_totals.begin(), 3, totals);
    const double resumed_samples = resumed_epoch ? start_point.epoch_totals[2] : 0.0;
    timer.begin_epoch();
    const double start = now_seconds();
    int64_t step = 0;
    double lr = sgd_options.lr();
    std::string epoch_health;  // --health at the epoch's last step: JSON for the metrics line
    for (; step < steps_in_epoch; ++step) {
      if (config.steps > 0 && result.steps >= config.steps) break;
      dist::set_current_step(result.steps + 1);  // 1-based; a communication timeout names it
      timer.begin_step();
      const data::Batch& batch = loader.batch(step);
      timer.lap(Phase::kData);
      lr = optim::lr_at(schedule, result.steps);
      optimizer.set_lr(lr);
      optimizer.zero_grad();
      timer.lap(Phase::kOptimizer);
      Tensor logits = ddp.forward(batch.images);
      const double loss = criterion.forward(logits, batch.labels);
      divergence.check_loss(loss, result.steps + 1, epoch + 1);
      timer.lap(Phase::kForward);
      ddp.backward(criterion.backward());
      timer.lap_backward(ddp.overlap().finish_wait_seconds);
      if (divergence.diverged(result.steps + 1, epoch + 1)) break;
      const bool epoch_ends = step + 1 == steps_in_epoch || result.steps + 1 == config.steps;
      if (leader && health_due(config.health, result.steps + 1, epoch_ends)) {
        epoch_health = publish_health(health_report(*model, result.steps + 1), epoch + 1,
                                      config.health, config.metrics);
      }
      optimizer.step();
      timer.end_step();
      ++result.steps;
      totals[0] += loss * static_cast<double>(batch.size());
      totals[1] += static_cast<double>(criterion.correct());
      totals[2] += static_cast<double>(batch.size());
      checkpoints.after_step(*model, optimizer, loader.sampler(), epoch, step + 1, result.steps,
                             totals);
      const double elapsed = now_seconds() - start;
      bar.update(step + 1, totals[0] / std::max(1.0, totals[2]),
                 totals[1] / std::max(1.0, totals[2]),
                 static_cast<double>((step + 1) * global_batch) / std::max(1e-9, elapsed));
    }
    timer.end_steps();
    const double seconds = now_seconds() - start;
    bar.finish();
    world->allreduce_sum(totals, 3, dist::DataType::kFloat64);

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.step = result.steps;
    m.train_loss = totals[0] / std::max(1.0, totals[2]);
    m.train_accuracy = totals[1] / std::max(1.0, totals[2]);
    // A diverged state is not evaluated: its test loss and accuracy go to --metrics as null.
    timer.mark();
    const EvalResult eval =
        divergence.step() > 0 ? EvalResult{std::nan(""), std::nan("")}
                              : evaluate(*model, data.test, *world, config.eval_batch_size, device);
    timer.lap(Phase::kEval);
    // The evaluation is reduced over all ranks, so every rank takes this branch together: the
    // last step can leave non-finite weights behind a finite training loss.
    divergence.check_evaluation(eval.loss, result.steps, epoch + 1);
    m.test_loss = eval.loss;
    m.test_accuracy = eval.accuracy;
    m.images_per_second = (totals[2] - resumed_samples) / std::max(1e-9, seconds);
    m.seconds = seconds;
    m.lr = lr;
    m.world_size = world->size();
    m.batch_size = config.batch_size;
    if (resumed_epoch) m.resumed_from_step = start_point.resumed_from_step;
    m.diverged_at_step = divergence.step();
    if (totals[2] == 0) m.train_loss = m.train_accuracy = std::nan("");  // diverged at once: null
    m.health = epoch_health;
    m.steps_in_epoch = step;
    timer.finish_epoch(m, seconds);
    result.epochs.push_back(m);
    if (leader) {
      std::printf("%s\n", summary_line(m, config.epochs).c_str());
      std::fflush(stdout);
      if (!config.metrics.empty()) append_metrics(config.metrics, m);
    }
    if (divergence.step() > 0) break;  // a diverged state is never checkpointed
    // After the metrics line, which a resume from here does not repeat.
    checkpoints.at_epoch_end(*model, optimizer, loader.sampler(), epoch, step, result.steps,
                             totals);
  }
  result.diverged_at_step = divergence.step();

  timer.write_timeline();
  if (!config.save.empty() && leader && result.diverged_at_step == 0) {
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
