#pragma once
// Per-epoch metrics: a summary line for people and one JSON object per line for machines.
#include <cstdint>
#include <string>

namespace syncbn::train {

// Where an epoch's time went (docs/DESIGN.md §7, "Where the time goes"), in seconds averaged
// over the ranks. data, forward, backward, grad_comm_exposed, optimizer and other are disjoint
// and sum to the epoch's training seconds; syncbn_comm lies inside forward and backward; eval is
// the evaluation after the epoch, outside its training seconds.
struct PhaseSeconds {
  double data = 0, forward = 0, backward = 0, syncbn_comm = 0, grad_comm_exposed = 0, optimizer = 0,
         eval = 0, other = 0;
};

// Per collective kind over an epoch's training steps, on rank 0: payload bytes or calls.
struct CollectiveCounts {
  int64_t syncbn_allreduce = 0, grad_allreduce = 0, other = 0;
};

struct EpochMetrics {
  int64_t epoch = 0;  // 1-based
  int64_t step = 0;   // optimizer steps so far
  double train_loss = 0, train_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double images_per_second = 0;  // global (all ranks) training images per second
  double seconds = 0;            // training time of the epoch, evaluation excluded
  double lr = 0;                 // learning rate of the last step
  int64_t world_size = 1, batch_size = 0;
  int64_t resumed_from_step = -1;  // the first epoch after --resume: the checkpoint's step
  // Written only when set: the step whose loss was not finite (--on-divergence record; that
  // line's losses may be null), and --health's report of the epoch's last step (JSON text).
  int64_t diverged_at_step = 0;
  std::string health;
  int64_t steps_in_epoch = 0;  // optimizer steps in this epoch
  // Filled when the run measures where the time goes (syncbn-train without --no-timing).
  bool has_timing = false;
  PhaseSeconds time;
  CollectiveCounts bytes, collectives;
};

std::string to_json(const EpochMetrics& m);
std::string summary_line(const EpochMetrics& m, int64_t total_epochs);
// Appends `line` and a newline to `path` (created if missing); throws naming the path on
// failure. Every writer of --metrics goes through it.
void append_metrics_line(const std::string& path, const std::string& line);
// Appends to_json(m) as one line, as append_metrics_line.
void append_metrics(const std::string& path, const EpochMetrics& m);

// A one-line progress bar redrawn in place on a terminal: "[=====>    ] 120/937 loss ... img/s".
class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t epoch, int64_t total_epochs, int64_t total_steps);
  void update(int64_t step, double loss, double accuracy, double images_per_second);
  void finish();

 private:
  bool enabled_;
  int64_t epoch_, total_epochs_, total_steps_;
  double last_draw_ = -1.0;
};

}  // namespace syncbn::train
