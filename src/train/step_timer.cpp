#include "train/step_timer.h"

#include <algorithm>
#include <cstdio>

#include "syncbn/distributed/communicator.h"
#include "syncbn/nn/sequential.h"
#include "train/timeline.h"

namespace syncbn::train {

namespace {

constexpr const char* kPhaseNames[] = {"data",      "forward", "backward", "wait for gradients",
                                       "optimizer", "eval"};

double seconds_between(int64_t begin_ns, int64_t end_ns) {
  return 1e-9 * static_cast<double>(end_ns - begin_ns);
}

}  // namespace

StepTimer::StepTimer(const TrainConfig& config, dist::Communicator& world,
                     const std::vector<const dist::Communicator*>& communicators, nn::Module& model,
                     int64_t steps_before)
    : enabled_(config.timing),
      world_(world),
      timeline_path_(config.timeline),
      steps_before_(steps_before) {
  if (!enabled_) return;
  for (const dist::Communicator* comm : communicators) {
    if (comm != nullptr &&
        std::find(communicators_.begin(), communicators_.end(), comm) == communicators_.end())
      communicators_.push_back(comm);
  }
  install_.emplace(&recorder_);
  if (timeline_path_.empty()) return;
  window_begin_ = config.timeline_start;
  window_end_ = config.timeline_start + config.timeline_steps;
  if (auto* sequential = dynamic_cast<nn::Sequential*>(&model)) sequential->trace_children(true);
  world_.barrier();
  origin_ns_ = profile::now_ns();
}

StepTimer::~StepTimer() = default;

StepTimer::Traffic StepTimer::traffic() const {
  Traffic t;
  for (const dist::Communicator* comm : communicators_) {
    const dist::CommStats& s = comm->stats();
    t.bytes += s.allreduce_bytes + s.broadcast_bytes + s.allgather_bytes;
    t.calls += s.allreduce_calls + s.broadcast_calls + s.allgather_calls;
  }
  return t;
}

void StepTimer::begin_epoch() {
  if (!enabled_) return;
  std::fill(std::begin(seconds_), std::end(seconds_), 0.0);
  recorder_.reset_totals();
  epoch_begin_traffic_ = steps_end_traffic_ = traffic();
}

void StepTimer::begin_step() {
  if (!enabled_) return;
  if (step_ == window_begin_ && !timeline_path_.empty()) recorder_.set_timeline(true);
  mark_ns_ = step_begin_ns_ = profile::now_ns();
}

void StepTimer::mark() {
  if (enabled_) mark_ns_ = profile::now_ns();
}

void StepTimer::lap(Phase phase) {
  if (!enabled_) return;
  const int64_t now = profile::now_ns();
  seconds_[static_cast<int>(phase)] += seconds_between(mark_ns_, now);
  if (recorder_.timeline()) {
    profile::Span span;
    span.name = kPhaseNames[static_cast<int>(phase)];
    span.category = "phase";
    span.begin_ns = mark_ns_;
    span.end_ns = now;
    recorder_.add_span(span);
  }
  mark_ns_ = now;
}

void StepTimer::lap_backward(double finish_wait_seconds) {
  if (!enabled_) return;
  // The wait happened inside this lap (DataParallel::finish); the rest of it is backward.
  const int64_t mark = mark_ns_;
  lap(Phase::kBackward);
  const double exposed = std::clamp(finish_wait_seconds, 0.0, seconds_between(mark, mark_ns_));
  seconds_[static_cast<int>(Phase::kBackward)] -= exposed;
  seconds_[static_cast<int>(Phase::kGradWait)] += exposed;
}

void StepTimer::end_step() {
  if (!enabled_) return;
  lap(Phase::kOptimizer);
  if (recorder_.timeline()) {
    profile::Span span;
    span.name = "step";
    span.category = "step";
    span.begin_ns = step_begin_ns_;
    span.end_ns = mark_ns_;
    span.index = steps_before_ + step_ + 1;  // 1-based over the run, as the metrics' "step"
    recorder_.add_span(span);
  }
  if (++step_ == window_end_) recorder_.set_timeline(false);
}

void StepTimer::end_steps() {
  if (enabled_) steps_end_traffic_ = traffic();
}

void StepTimer::finish_epoch(EpochMetrics& m, double seconds) {
  if (!enabled_) return;
  auto phase = [this](Phase p) { return seconds_[static_cast<int>(p)]; };
  const profile::CollectiveTotals& sync_bn = recorder_.totals(profile::Collective::kSyncBn);
  const profile::CollectiveTotals& gradients = recorder_.totals(profile::Collective::kGradient);
  const double disjoint = phase(Phase::kData) + phase(Phase::kForward) + phase(Phase::kBackward) +
                          phase(Phase::kGradWait) + phase(Phase::kOptimizer);
  // [data, forward, backward, syncbn_comm, grad_comm_exposed, optimizer, eval, other], summed
  // over the ranks in one allreduce, then averaged.
  double t[8] = {phase(Phase::kData), phase(Phase::kForward),           phase(Phase::kBackward),
                 sync_bn.seconds,     phase(Phase::kGradWait),          phase(Phase::kOptimizer),
                 phase(Phase::kEval), std::max(0.0, seconds - disjoint)};
  world_.allreduce_sum(t, 8, dist::DataType::kFloat64);
  for (double& value : t) value /= world_.size();
  m.time = {t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]};
  // What the communicators counted during the steps, less what SyncBN and the buckets reported:
  // the rest (buffer broadcasts with --broadcast-buffers, ...).
  const int64_t all_bytes = steps_end_traffic_.bytes - epoch_begin_traffic_.bytes;
  const int64_t all_calls = steps_end_traffic_.calls - epoch_begin_traffic_.calls;
  m.bytes = {sync_bn.bytes, gradients.bytes,
             std::max<int64_t>(0, all_bytes - sync_bn.bytes - gradients.bytes)};
  m.collectives = {sync_bn.calls, gradients.calls,
                   std::max<int64_t>(0, all_calls - sync_bn.calls - gradients.calls)};
  m.has_timing = true;
}

void StepTimer::write_timeline() {
  if (!enabled_ || timeline_path_.empty()) return;
  recorder_.set_timeline(false);
  const std::string events = trace_events_json(recorder_.spans(), world_.rank(), origin_ns_);
  const std::vector<std::string> ranks = world_.allgather_strings(events);
  if (world_.rank() != 0) return;
  write_trace(timeline_path_, ranks);
  const int64_t last = std::min(step_, window_end_);
  if (last <= window_begin_) {
    std::printf("timeline: %s has no steps (this process made %lld, --timeline-start is %lld)\n",
                timeline_path_.c_str(), static_cast<long long>(step_),
                static_cast<long long>(window_begin_));
  } else {
    std::printf(
        "timeline: steps %lld..%lld of %d rank(s) in %s (open in https://ui.perfetto.dev)\n",
        static_cast<long long>(steps_before_ + window_begin_ + 1),
        static_cast<long long>(steps_before_ + last), world_.size(), timeline_path_.c_str());
  }
  std::fflush(stdout);
}

}  // namespace syncbn::train
