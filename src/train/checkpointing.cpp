#include "train/checkpointing.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "syncbn/distributed/consistency.h"
#include "syncbn/error.h"

namespace syncbn::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Rank 0's text reaches every rank: its length, then its bytes.
std::string broadcast_text(dist::Communicator& world, std::string text) {
  int64_t length = static_cast<int64_t>(text.size());
  world.broadcast(&length, 1, dist::DataType::kInt64, 0);
  text.resize(static_cast<std::size_t>(length));
  if (length > 0) world.broadcast(text.data(), length, dist::DataType::kUint8, 0);
  return text;
}

json names_and_shapes(const NamedTensors& tensors) {
  json out = json::array();
  for (const auto& [name, tensor] : tensors) out.push_back({name, tensor.shape()});
  return out;
}

NamedTensors empty_tensors(const json& names_and_shapes) {
  NamedTensors out;
  for (const auto& entry : names_and_shapes) {
    out.emplace_back(entry.at(0).get<std::string>(), Tensor::empty(entry.at(1).get<Shape>()));
  }
  return out;
}

// Rank 0: the checkpoint that config.resume names (a file, or the newest valid one of a
// directory), checked against this run. Its path goes to `path`.
RunState read_checkpoint(const TrainConfig& config, const Settings& settings,
                         const data::DistributedSampler& sampler, std::string& path) {
  path = config.resume;
  std::error_code ec;
  RunState state;
  if (fs::is_directory(path, ec)) {
    state = load_newest_run_state(config.resume, &path, [](const std::string& message) {
      std::fprintf(stderr, "rank 0: --resume: %s\n", message.c_str());
      std::fflush(stderr);
    });
  } else {
    SYNCBN_CHECK(fs::exists(path, ec), "--resume ", path, ": no such file or directory");
    state = load_run_state(path);
  }
  check_resumable(state.settings, settings, path);
  SYNCBN_CHECK(state.position.sample_offset <= sampler.dataset_size(), "--resume ", path,
               ": sample offset ", state.position.sample_offset, " is beyond the ",
               sampler.dataset_size(), " training samples");
  return state;
}

// The step at which a run with `sampler`'s global batch continues from `position` (see
// resume_training in checkpointing.h).
int64_t resumed_step(const RunPosition& position, const data::DistributedSampler& sampler) {
  const int64_t global = sampler.global_batch_size();
  const int64_t remaining = sampler.dataset_size() - position.sample_offset;
  const int64_t steps_left =
      sampler.drop_last() ? remaining / global : (remaining + global - 1) / global;
  return (position.epoch + 1) * sampler.steps_per_epoch() - steps_left;
}

void check_finite(const NamedTensors& tensors, const std::string& prefix, int64_t step) {
  for (const auto& [name, tensor] : tensors) {
    for (float value : tensor.to_vector()) {
      SYNCBN_CHECK(std::isfinite(value), "training diverged at step ", step, ": ", prefix, name,
                   " holds a non-finite value after it; no checkpoint written (the last one "
                   "written stays)");
    }
  }
}

}  // namespace

Settings run_settings(const TrainConfig& config, const data::Dataset& train) {
  Settings settings = config.settings();
  char fingerprint[32];
  std::snprintf(fingerprint, sizeof fingerprint, "%016llx",
                static_cast<unsigned long long>(data::fingerprint(train)));
  settings.emplace_back("training-data",
                        std::to_string(train.size()) + " samples, fingerprint " + fingerprint);
  return settings;
}

StartPoint resume_training(const TrainConfig& config, dist::Communicator& world,
                           const Settings& settings, nn::Module& model, optim::Sgd& optimizer,
                           const data::DistributedSampler& sampler) {
  StartPoint start;
  if (config.resume.empty()) return start;
  // Rank 0 reads the file; the description of its state, or rank 0's error, reaches every rank,
  // and then the tensors do: every rank throws or none, and only rank 0 needs the file.
  RunState state;
  json header;
  if (world.rank() == 0) {
    try {
      std::string path;
      state = read_checkpoint(config, settings, sampler, path);
      header = {{"path", path},
                {"epoch", state.position.epoch},
                {"sample_offset", state.position.sample_offset},
                {"step", state.position.step},
                {"world_size", state.world_size},
                {"global_batch", state.global_batch},
                {"epoch_totals", state.epoch_totals},
                {"model", names_and_shapes(state.model)},
                {"optimizer", names_and_shapes(state.optimizer)}};
    } catch (const std::exception& e) {
      header = {{"error", e.what()}};
    }
  }
  header = json::parse(broadcast_text(world, header.dump()));
  if (header.contains("error")) SYNCBN_FAIL(header["error"].get<std::string>());
  if (world.rank() != 0) {
    state.model = empty_tensors(header["model"]);
    state.optimizer = empty_tensors(header["optimizer"]);
  }
  for (NamedTensors* group : {&state.model, &state.optimizer}) {
    for (auto& [name, tensor] : *group) world.broadcast(tensor, 0);
  }
  const std::string path = header["path"].get<std::string>();
  try {
    nn::load_state_dict(model, state.model);
    optimizer.load_state_dict(state.optimizer);
  } catch (const Error& e) {
    SYNCBN_FAIL("--resume ", path, ": ", e.what());
  }

  start.position.epoch = header["epoch"].get<int64_t>();
  start.position.sample_offset = header["sample_offset"].get<int64_t>();
  start.resumed_from_step = header["step"].get<int64_t>();
  start.position.step = resumed_step(start.position, sampler);
  start.epoch_totals = header["epoch_totals"].get<std::array<double, 3>>();
  if (world.rank() == 0) {
    const int64_t saved_batch = header["global_batch"].get<int64_t>();
    std::printf(
        "resumed from %s: epoch %lld, sample %lld of %lld, step %lld (written by %lld rank(s), "
        "global batch %lld)\n",
        path.c_str(), static_cast<long long>(start.position.epoch + 1),
        static_cast<long long>(start.position.sample_offset),
        static_cast<long long>(sampler.dataset_size()),
        static_cast<long long>(start.resumed_from_step),
        static_cast<long long>(header["world_size"].get<int64_t>()),
        static_cast<long long>(saved_batch));
    if (start.position.step != start.resumed_from_step) {
      std::printf(
          "global batch now %lld (%lld steps/epoch): continuing at step %lld, where the rest of "
          "epoch %lld ends at step %lld\n",
          static_cast<long long>(sampler.global_batch_size()),
          static_cast<long long>(sampler.steps_per_epoch()),
          static_cast<long long>(start.position.step),
          static_cast<long long>(start.position.epoch + 1),
          static_cast<long long>((start.position.epoch + 1) * sampler.steps_per_epoch()));
    }
    std::fflush(stdout);
  }
  return start;
}

Checkpointer::Checkpointer(const TrainConfig& config, dist::Communicator& world, Settings settings,
                           int64_t global_batch)
    : world_(world),
      directory_(config.checkpoint_dir),
      every_(config.checkpoint_every),
      keep_(config.keep_checkpoints),
      settings_(std::move(settings)),
      global_batch_(global_batch) {
  // Checkpoint steps hold a collective, and so does a resume.
  dist::check_consistent(world,
                         {{"checkpoint-every", enabled() ? std::to_string(every_) : "off"},
                          {"resume", config.resume.empty() ? "no" : "yes"}},
                         "checkpoint configuration");
  if (!enabled() || world.rank() != 0) return;
  std::error_code ec;
  fs::create_directories(directory_, ec);
  SYNCBN_CHECK(fs::is_directory(directory_), "--checkpoint-dir ", directory_,
               ": cannot create the directory (", ec ? ec.message() : "a file is in the way", ")");
  for (const std::string& path : remove_stray_temps(directory_)) {
    std::printf("removed %s: a temporary checkpoint file whose writer is gone\n", path.c_str());
  }
  // Fails now, not at the first checkpoint, when the directory is not writable.
  const std::string scratch =
      (fs::path(directory_) / ".write-check.").string() + std::to_string(::getpid());
  const int fd = ::open(scratch.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  SYNCBN_CHECK(fd >= 0, "--checkpoint-dir ", directory_, ": cannot create files there (",
               std::strerror(errno), ")");
  ::close(fd);
  ::unlink(scratch.c_str());
}

void Checkpointer::after_step(const nn::Module& model, const optim::Sgd& optimizer,
                              const data::DistributedSampler& sampler, int64_t epoch,
                              int64_t steps_done, int64_t step, const double local_totals[3]) {
  if (!enabled() || every_ == 0 || step % every_ != 0 || steps_done == sampler.steps_in_epoch())
    return;
  double totals[3] = {local_totals[0], local_totals[1], local_totals[2]};
  world_.allreduce_sum(totals, 3, dist::DataType::kFloat64);
  save(model, optimizer, {epoch, sampler.sample_offset_after(steps_done), step}, totals);
}

void Checkpointer::at_epoch_end(const nn::Module& model, const optim::Sgd& optimizer,
                                const data::DistributedSampler& sampler, int64_t epoch,
                                int64_t steps_done, int64_t step, const double totals[3]) {
  if (steps_done == sampler.steps_in_epoch()) {
    const double no_totals[3] = {0, 0, 0};
    save(model, optimizer, {epoch + 1, 0, step}, no_totals);
  } else {
    save(model, optimizer, {epoch, sampler.sample_offset_after(steps_done), step}, totals);
  }
}

void Checkpointer::save(const nn::Module& model, const optim::Sgd& optimizer,
                        const RunPosition& position, const double totals[3]) {
  if (!enabled() || world_.rank() != 0 || position.step == last_step_) return;
  RunState state;
  state.model = model.state_dict();
  state.optimizer = optimizer.state_dict();
  // The weights of a diverged run never replace the last good checkpoint.
  check_finite(state.model, "model.", position.step);
  check_finite(state.optimizer, "optimizer.", position.step);
  state.position = position;
  state.epoch_totals = {totals[0], totals[1], totals[2]};
  state.world_size = world_.size();
  state.global_batch = global_batch_;
  state.settings = settings_;
  const std::string path = (fs::path(directory_) / checkpoint_file_name(position.step)).string();
  save_run_state(path, state);
  prune_checkpoints(directory_, position.step, keep_);
  last_step_ = position.step;
  if (position.sample_offset == 0 && position.epoch > 0) {
    std::printf("checkpoint %s (end of epoch %lld)\n", path.c_str(),
                static_cast<long long>(position.epoch));
  } else {
    std::printf("checkpoint %s (epoch %lld, sample %lld)\n", path.c_str(),
                static_cast<long long>(position.epoch + 1),
                static_cast<long long>(position.sample_offset));
  }
  std::fflush(stdout);
}

}  // namespace syncbn::train
