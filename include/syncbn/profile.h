#pragma once
// Where the time goes: a recorder that the training loop and the layers that communicate
// (SyncBatchNorm, DataParallel, the model's top-level Sequential) report to, installed on the
// training thread for the length of a run (docs/DESIGN.md §7, "Where the time goes").
//
// Two levels, so that measuring costs nothing worth measuring:
//   totals    seconds, payload bytes and calls per collective kind, always while a recorder is
//             installed: two clock reads per blocking collective, a few additions per launch;
//   timeline  spans (begin, end) for a Chrome trace, only while timeline() is on (a bounded
//             window of steps); outside it each hook is a thread-local load and two branches.
// With no recorder installed on the calling thread every hook is a thread-local load and a branch.
//
// One recorder per thread (the hooks read a thread_local pointer): only the thread that calls
// MPI (MPI_THREAD_FUNNELED) runs collectives, forward and backward, so no hook takes a lock.
// Gradient buckets are launched and seen complete on that same thread (DataParallel polls its
// requests in backward and waits in finish()); no other thread reports.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace syncbn::profile {

// Nanoseconds on the steady clock (the clock of util/clock.h).
int64_t now_ns();

enum class Collective { kSyncBn, kGradient };
inline constexpr int kCollectiveKinds = 2;

struct CollectiveTotals {
  double seconds = 0;  // blocking collectives: time inside the call; gradients: not measured here
  int64_t bytes = 0;   // payload: count * element size, as CommStats counts it
  int64_t calls = 0;
};

// Which track of a rank a span belongs on: the training thread, or the gradient buckets in
// flight (buckets overlap each other and backward; the trace writer gives them lanes).
enum class Track { kMain, kGradientBuckets };

// One complete event of the timeline. `name` and `category` point at string literals or at
// labels that live as long as the model (Sequential::trace_children).
struct Span {
  const char* name = "";
  const char* category = "";
  int64_t begin_ns = 0, end_ns = 0;
  int64_t bytes = -1;  // payload of a collective, -1 for computation
  int64_t index = -1;  // the step of a "step" span, the bucket of a bucket span, else -1
  Track track = Track::kMain;
};

class Recorder {
 public:
  Recorder();

  // Spans are kept only while this is on; turning it on reserves room for them.
  void set_timeline(bool on);
  bool timeline() const { return timeline_; }

  const CollectiveTotals& totals(Collective kind) const { return totals_[static_cast<int>(kind)]; }
  void reset_totals();

  // A blocking collective of `bytes` payload that ran from begin_ns to end_ns.
  void add_collective(Collective kind, const char* name, int64_t bytes, int64_t begin_ns,
                      int64_t end_ns);
  void add_span(const Span& span) {
    if (timeline_) spans_.push_back(span);
  }
  // A gradient bucket's non-blocking allreduce started, and (later) was seen complete.
  void bucket_launched(std::size_t index, int64_t bytes);
  void bucket_completed(std::size_t index);

  const std::vector<Span>& spans() const { return spans_; }

 private:
  bool timeline_ = false;
  CollectiveTotals totals_[kCollectiveKinds];
  std::vector<Span> spans_;
  // Per bucket: launch time and payload of the allreduce in flight; begin -1 when none.
  std::vector<int64_t> bucket_begin_ns_, bucket_bytes_;
};

// The calling thread's recorder, or nullptr: then the hooks record nothing.
Recorder* current();

// Installs a recorder on the calling thread for this object's lifetime (the previous one is
// restored after).
class Install {
 public:
  explicit Install(Recorder* recorder);
  ~Install();
  Install(const Install&) = delete;
  Install& operator=(const Install&) = delete;

 private:
  Recorder* previous_;
};

// A span from construction to destruction on the current recorder's timeline; nothing when
// `name` is null, no recorder is installed or its timeline is off.
class ScopedSpan {
 public:
  ScopedSpan(const char* name, const char* category) {
    if (name == nullptr) return;
    Recorder* recorder = current();
    if (recorder == nullptr || !recorder->timeline()) return;
    recorder_ = recorder;
    span_.name = name;
    span_.category = category;
    span_.begin_ns = now_ns();
  }
  ~ScopedSpan() {
    if (recorder_ == nullptr) return;
    span_.end_ns = now_ns();
    recorder_->add_span(span_);
  }
  ScopedSpan(const ScopedSpan&) = delete;
  ScopedSpan& operator=(const ScopedSpan&) = delete;

 private:
  Recorder* recorder_ = nullptr;
  Span span_;
};

// Times a blocking collective from construction to destruction into the current recorder's
// totals (and its timeline within the window).
class ScopedCollective {
 public:
  ScopedCollective(Collective kind, const char* name, int64_t bytes)
      : recorder_(current()), kind_(kind), name_(name), bytes_(bytes) {
    if (recorder_ != nullptr) begin_ns_ = now_ns();
  }
  ~ScopedCollective() {
    if (recorder_ != nullptr) recorder_->add_collective(kind_, name_, bytes_, begin_ns_, now_ns());
  }
  ScopedCollective(const ScopedCollective&) = delete;
  ScopedCollective& operator=(const ScopedCollective&) = delete;

 private:
  Recorder* recorder_;
  Collective kind_;
  const char* name_;
  int64_t bytes_;
  int64_t begin_ns_ = 0;
};

inline void bucket_launched(std::size_t index, int64_t bytes) {
  if (Recorder* recorder = current()) recorder->bucket_launched(index, bytes);
}
inline void bucket_completed(std::size_t index) {
  if (Recorder* recorder = current()) recorder->bucket_completed(index);
}

}  // namespace syncbn::profile
