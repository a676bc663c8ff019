#pragma once
// What syncbn-train does when a loss is not finite (--on-divergence):
//   stop   : throw "training diverged at step K ..." on the rank that sees it; abort_job ends
//            the job with a non-zero exit (the historical behaviour, the default);
//   record : every rank learns whether any rank's loss is not finite through one allreduce of
//            one double per step (this mode only, and only with more than one rank: one rank
//            decides alone), so that all stop at the same step K; the run ends normally (exit
//            0) with K recorded as "diverged_at_step", no checkpoint. The allreduce is
//            non-blocking: started before backward, waited for after it, so its latency hides
//            behind backward; step K's backward runs (its gradients, maybe NaN, are discarded)
//            and its optimizer step does not.
#include <cstdint>
#include <memory>
#include <string>

#include "syncbn/distributed/communicator.h"

namespace syncbn::train {

// The --on-divergence mode: true for record, false for stop; throws naming anything else.
bool parse_on_divergence(const std::string& mode);

class DivergenceGuard {
 public:
  // mode: "stop" | "record"; base_lr is quoted in the error of stop mode.
  DivergenceGuard(const std::string& mode, dist::Communicator& world, double base_lr);

  // Called on every rank with the rank's loss of `step` (1-based), before backward. Stop mode:
  // throws when the loss is not finite. Record mode: starts the ranks' agreement.
  void check_loss(double loss, int64_t step, int64_t epoch);
  // Called on every rank after the backward of `step`, before the optimizer step. Record mode:
  // waits for the agreement, true on every rank when the loss of any rank was not finite (then
  // step() == step). Stop mode: false.
  bool diverged(int64_t step, int64_t epoch);
  // The test loss after `step`, reduced over ranks (so the same on all): a finite training loss
  // can leave non-finite weights behind. Stop mode throws; record mode records `step`.
  void check_evaluation(double test_loss, int64_t step, int64_t epoch);

  // The recorded step, 0 while none.
  int64_t step() const { return step_; }

 private:
  void record(int64_t step, int64_t epoch, const std::string& what);

  bool record_;
  dist::Communicator& world_;
  double base_lr_;
  int64_t step_ = 0;
  double non_finite_ = 0;  // this rank's 0 or 1, then the count over ranks
  std::unique_ptr<dist::Request> pending_;
};

}  // namespace syncbn::train
