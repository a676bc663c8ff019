#pragma once
// The training loop's side of resumable training (docs/DESIGN.md §6): periodic checkpoints
// (--checkpoint-dir, --checkpoint-every, --keep-checkpoints) and --resume. The files and their
// format are in syncbn/train/run_state.h. Internal to run_training.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/data/dataset.h"
#include "syncbn/data/sampler.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/nn/module.h"
#include "syncbn/optim/sgd.h"
#include "syncbn/train/run_state.h"
#include "syncbn/train/trainer.h"

namespace syncbn::train {

using Settings = std::vector<std::pair<std::string, std::string>>;

// What a checkpoint records and a resume compares: config.settings() and the training data
// ("training-data": its size and fingerprint).
Settings run_settings(const TrainConfig& config, const data::Dataset& train);

// Where training starts: step 0, or the position of the checkpoint resumed from.
struct StartPoint {
  RunPosition position;
  // [sum of loss * n, correct, n] of the epoch so far, over all ranks, as the checkpoint
  // recorded them (one rank adds them to its own before the epoch-end reduction).
  std::array<double, 3> epoch_totals{};
  int64_t resumed_from_step = -1;  // the checkpoint's step; -1 without --resume
};

// --resume: rank 0 picks the checkpoint (config.resume, a file or the newest valid one of a
// directory), checks its settings against `settings`, and every rank receives it (broadcast)
// and loads it into `model` and `optimizer`. Collective; throws on every rank or none. The step
// is recomputed for this run's global batch B' with S' steps per epoch, so that the epoch in
// progress ends at step (epoch + 1) * S' as in a run that had B' from the start:
//   step = (epoch + 1) * S' - (steps of B' left in the epoch after sample_offset).
// With the saved global batch this is the saved step.
StartPoint resume_training(const TrainConfig& config, dist::Communicator& world,
                           const Settings& settings, nn::Module& model, optim::Sgd& optimizer,
                           const data::DistributedSampler& sampler);

class Checkpointer {
 public:
  // Collective: the ranks must agree on when checkpoints are taken (they reduce the epoch's
  // totals together at those steps). Rank 0 creates the directory if needed, checks that it can
  // write there and removes the temporary files of writers that are gone.
  Checkpointer(const TrainConfig& config, dist::Communicator& world, Settings settings,
               int64_t global_batch);

  bool enabled() const { return !directory_.empty(); }
  // After `steps_done` steps of the current epoch of `sampler` (epoch `epoch`), the run's
  // `step`-th: when --checkpoint-every falls on this step and it is not the epoch's last (the
  // epoch's end writes that one), sums `local_totals` over the ranks (collective) and rank 0
  // writes the checkpoint.
  void after_step(const nn::Module& model, const optim::Sgd& optimizer,
                  const data::DistributedSampler& sampler, int64_t epoch, int64_t steps_done,
                  int64_t step, const double local_totals[3]);
  // At the end of epoch `epoch` (complete, or cut short by --steps after `steps_done` steps),
  // with the epoch's global `totals`: rank 0 writes the checkpoint. Not collective.
  void at_epoch_end(const nn::Module& model, const optim::Sgd& optimizer,
                    const data::DistributedSampler& sampler, int64_t epoch, int64_t steps_done,
                    int64_t step, const double totals[3]);
  // Rank 0 writes the checkpoint of `position` with the epoch's global `totals`; it does
  // nothing when this step was written already.
  void save(const nn::Module& model, const optim::Sgd& optimizer, const RunPosition& position,
            const double totals[3]);

 private:
  dist::Communicator& world_;
  std::string directory_;
  int64_t every_ = 0, keep_ = 1;
  Settings settings_;
  int64_t global_batch_;
  int64_t last_step_ = -1;
};

}  // namespace syncbn::train
