#pragma once
// StepTimer: where the training loop's time goes (docs/DESIGN.md §7, "Where the time goes").
//
// The loop marks the boundaries of the phases it already has, and each lap adds the seconds
// since the previous boundary to one phase (steady clock):
//
//   timer.begin_step();                       //  step k
//   batch = loader.batch(step);    timer.lap(Phase::kData);
//   zero_grad ...;                 timer.lap(Phase::kOptimizer);
//   forward, loss;                 timer.lap(Phase::kForward);
//   ddp.backward(dloss);           timer.lap_backward(ddp.overlap().finish_wait_seconds);
//   optimizer.step();              timer.end_step();
//   ... (after the epoch's last step)  timer.end_steps();
//
// It also owns the thread's profile::Recorder, to which SyncBatchNorm (statistics allreduces)
// and DataParallel (gradient buckets) report, and opens its timeline for the steps of the
// --timeline window only. Disabled (--no-timing), every call returns at once and no recorder is
// installed, so the layers' hooks see none.
#include <cstdint>
#include <optional>
#include <vector>

#include "syncbn/profile.h"
#include "syncbn/train/metrics.h"
#include "syncbn/train/trainer.h"

namespace syncbn::dist {
class Communicator;
}

namespace syncbn::nn {
class Module;
}

namespace syncbn::train {

enum class Phase { kData, kForward, kBackward, kGradWait, kOptimizer, kEval };

class StepTimer {
 public:
  // `communicators`: every communicator the run uses (duplicates and nulls are skipped), whose
  // CommStats give the bytes and calls that are neither SyncBN's nor the gradients'. With a
  // timeline, the model's top-level children are traced and the ranks meet in a barrier to
  // share a clock origin: a collective, so every rank constructs its StepTimer together.
  // `steps_before`: the optimizer steps the run made before this process (the resumed step, 0
  // for a fresh run): the timeline labels step k of this process steps_before + k, as the
  // metrics do, while its window (--timeline-start) counts from this process's first step.
  StepTimer(const TrainConfig& config, dist::Communicator& world,
            const std::vector<const dist::Communicator*>& communicators, nn::Module& model,
            int64_t steps_before);
  ~StepTimer();
  StepTimer(const StepTimer&) = delete;
  StepTimer& operator=(const StepTimer&) = delete;

  void begin_epoch();
  void begin_step();
  // Starts a phase boundary without charging the time since the last one to any phase.
  void mark();
  // Charges the seconds since the last boundary to `phase`.
  void lap(Phase phase);
  // Charges the seconds since the last boundary to backward, except `finish_wait_seconds`
  // (DataParallel blocked on gradient buckets after the model's backward), charged to kGradWait.
  void lap_backward(double finish_wait_seconds);
  // lap(kOptimizer), and the step's end: the timeline window closes after its last step.
  void end_step();
  // The epoch's steps are over (after the loop, before the epoch's own collectives): the traffic
  // that finish_epoch reports ends here. Once per epoch: traffic() walks the communicators.
  void end_steps();
  // Fills m.time (averaged over the ranks: one allreduce, every rank calls it), m.bytes and
  // m.collectives (this rank's) for the epoch whose training took `seconds` on this rank.
  void finish_epoch(EpochMetrics& m, double seconds);
  // With --timeline: gathers every rank's spans to rank 0, which writes the trace. Collective.
  void write_timeline();

 private:
  struct Traffic {
    int64_t bytes = 0, calls = 0;
  };
  Traffic traffic() const;  // summed over communicators_ since their construction

  const bool enabled_;
  dist::Communicator& world_;
  std::vector<const dist::Communicator*> communicators_;
  std::string timeline_path_;
  int64_t window_begin_ = 0, window_end_ = 0;  // steps [begin, end) of the run are traced
  profile::Recorder recorder_;
  std::optional<profile::Install> install_;
  int64_t origin_ns_ = 0;  // timeline time 0, the same moment on every rank (a barrier)
  int64_t mark_ns_ = 0, step_begin_ns_ = 0;
  int64_t steps_before_ = 0;  // the run's steps before this process (--resume)
  int64_t step_ = 0;          // 0-based over this process
  double seconds_[6] = {};
  Traffic epoch_begin_traffic_, steps_end_traffic_;
};

}  // namespace syncbn::train
