#include "train/divergence.h"

#include <cmath>
#include <cstdio>

#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn::train {

bool parse_on_divergence(const std::string& mode) {
  SYNCBN_CHECK(mode == "stop" || mode == "record", "unknown --on-divergence ", quote_brief(mode),
               ": expected stop (the default) or record");
  return mode == "record";
}

DivergenceGuard::DivergenceGuard(const std::string& mode, dist::Communicator& world, double base_lr)
    : record_(parse_on_divergence(mode)), world_(world), base_lr_(base_lr) {}

void DivergenceGuard::check_loss(double loss, int64_t step, int64_t epoch) {
  if (!record_) {
    // A rank whose loss is not finite stops at once. No collective is needed for the others:
    // the error reaches abort_job, which ends the whole job (MPI_Abort) within a second.
    if (std::isfinite(loss)) return;
    SYNCBN_FAIL("training diverged at step ", step, " (epoch ", epoch, "): loss is ",
                std::isnan(loss) ? "nan" : "inf", "; lower --lr (now ", shortest_repr(base_lr_),
                "), add --warmup-epochs or use a normalisation layer (--norm); no checkpoint "
                "written");
  }
  // Each rank's loss is the mean over its own batch, so ranks can disagree: the count of
  // non-finite losses, summed over ranks, is the same on all of them. Every rank starts this
  // allreduce before backward's, in the same order, as MPI requires on one communicator. A
  // single rank's count is its own: no collective.
  non_finite_ = std::isfinite(loss) ? 0.0 : 1.0;
  if (world_.size() > 1)
    pending_ = world_.iallreduce_sum(&non_finite_, 1, dist::DataType::kFloat64);
}

bool DivergenceGuard::diverged(int64_t step, int64_t epoch) {
  if (pending_) {
    pending_->wait();
    pending_.reset();
  }
  // Stop mode never counts (check_loss returns or throws): non_finite_ stays 0.
  if (non_finite_ == 0.0) return false;
  record(step, epoch,
         "the loss is not finite on " + std::to_string(static_cast<int64_t>(non_finite_)) + " of " +
             std::to_string(world_.size()) + " rank(s)");
  return true;
}

void DivergenceGuard::check_evaluation(double test_loss, int64_t step, int64_t epoch) {
  if (std::isfinite(test_loss) || step_ > 0) return;
  SYNCBN_CHECK(record_, "training diverged at step ", step, " (epoch ", epoch,
               "): the test loss after it is ", std::isnan(test_loss) ? "nan" : "inf",
               "; lower --lr (now ", shortest_repr(base_lr_), "); no checkpoint written");
  record(step, epoch,
         std::string("the test loss after it is ") + (std::isnan(test_loss) ? "nan" : "inf"));
}

void DivergenceGuard::record(int64_t step, int64_t epoch, const std::string& what) {
  step_ = step;
  if (world_.rank() != 0) return;
  std::printf(
      "training diverged at step %lld (epoch %lld): %s; --on-divergence record: all ranks stop "
      "here, diverged_at_step %lld goes to --metrics, no checkpoint written (--save skipped)\n",
      static_cast<long long>(step), static_cast<long long>(epoch), what.c_str(),
      static_cast<long long>(step));
  std::fflush(stdout);
}

}  // namespace syncbn::train
