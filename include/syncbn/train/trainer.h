#pragma once
// The training loop: epochs of data-parallel SGD steps, evaluation on the test split, metrics
// and the final checkpoint. syncbn-train and the examples are thin front ends over it.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/nn/models.h"
#include "syncbn/train/metrics.h"

namespace syncbn::dist {
class Communicator;
}

namespace syncbn::train {

// The flat record of a run's settings, one field per syncbn-train flag. A plain struct, not a
// SYNCBN_ARG options class: Boost.Program_options binds each flag to a field's address
// (po::value(&c.lr), src/apps/train_main.cpp).
struct TrainConfig {
  std::string model = "mlp";
  std::string norm = "bn";
  int64_t sync_group_size = 0;  // syncbn: groups of k consecutive ranks; 0 = the whole world
  std::string dataset = "fashion-mnist";
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t synthetic_samples = 10000;
  int64_t synthetic_classes = 10;
  std::vector<int64_t> synthetic_shape = {1, 28, 28};
  int64_t epochs = 1;
  int64_t steps = 0;        // cap on optimizer steps over the whole run; 0 = no cap
  int64_t batch_size = 64;  // per rank
  double lr = 0.02;
  bool scale_lr = false;  // lr = lr * global_batch / 256
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  bool decay_norm_and_bias = true;
  std::string schedule = "cosine";
  double warmup_epochs = 0.0;
  std::string init = "kaiming";               // a scheme name or constant:V (nn::parse_init)
  std::string norm_placement = "before-act";  // before-act | after-act (mlp, cnn)
  double dropout = 0.0;                       // Dropout probability in each hidden block; 0 = none
  std::string dropout_placement = "after-act";  // after-act | before-norm
  // A non-finite loss: "stop" throws (non-zero exit); "record" ends the run on every rank at
  // that step, writes a last metrics line with "diverged_at_step" and returns normally.
  std::string on_divergence = "stop";
  // Training health report (rank 0, train/health.h): -1 = off, 0 = at each epoch's last step,
  // K > 0 = every K-th step.
  int64_t health = -1;
  uint64_t seed = 0;
  int64_t eval_batch_size = 1000;
  bool broadcast_buffers = false;  // DataParallel: broadcast local BN buffers from rank 0
  int64_t first_bucket_kib = 1024, bucket_kib = 25 * 1024;
  // "auto" (CUDA when this build has it and a GPU is visible, else CPU), "cpu", "cuda".
  std::string device = "auto";
  std::string save;
  std::string metrics;
  // Weights and buffers to start from (safetensors, state_dict names, e.g. exported from
  // PyTorch), loaded strictly over the initialisation; rank 0's reach every rank.
  std::string init_from;
  bool progress = true;  // progress bar on a terminal (rank 0)
  // Resumable training (docs/DESIGN.md §6, syncbn/train/run_state.h): rank 0 writes the run's
  // state to checkpoint_dir every checkpoint_every optimizer steps (0 = at epoch ends only), at
  // each epoch's end and at the run's end, keeping the keep_checkpoints newest. resume: a
  // checkpoint file, or a directory whose newest valid checkpoint is continued.
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 3;
  std::string resume;
  // Where the time goes (docs/DESIGN.md §7): phase seconds, bytes and calls per collective kind
  // in every --metrics line (off: --no-timing), and a Chrome trace of every rank written to
  // `timeline` for steps timeline_start .. timeline_start + timeline_steps - 1 (0-based).
  bool timing = true;
  std::string timeline;
  int64_t timeline_start = 5, timeline_steps = 20;

  // The settings that must agree on every rank, as (name, value) pairs.
  std::vector<std::pair<std::string, std::string>> settings() const;
  // Throws syncbn::Error naming the first invalid setting: the flag, the value and the allowed
  // range for numbers (finite reals; counts bounded so that their products cannot overflow),
  // and any synthetic shape whose element or byte count overflows 64 bits.
  void validate() const;
};

struct TrainResult {
  std::vector<EpochMetrics> epochs;
  int64_t steps = 0;
  int64_t diverged_at_step = 0;  // --on-divergence record: the step whose loss was not finite
};

// The device this rank trains on: for CUDA, GPU local_rank % visible devices (docs/DESIGN.md §5).
// "auto" is CUDA when a device is visible, else the CPU; a broken CUDA installation (e.g. a
// driver too old for the runtime) throws instead of falling back. `why`, when given, receives
// the reason in words, which syncbn-train prints on rank 0.
Device resolve_device(const std::string& name, int local_rank, std::string* why = nullptr);

// Runs the whole training on this rank of `world` (a world of one without mpirun). Throws
// syncbn::Error before training when rank 0 cannot write --save or --metrics, and stops on
// every rank at the same step when a loss is not finite ("training diverged at step K"), with
// no checkpoint written: by throwing (--on-divergence stop), or by returning with
// diverged_at_step set (record).
TrainResult run_training(const TrainConfig& config, std::shared_ptr<dist::Communicator> world);

}  // namespace syncbn::train
