#include "syncbn/profile.h"

#include <chrono>

namespace syncbn::profile {

namespace {
thread_local Recorder* installed = nullptr;
// Room for the spans of a typical window (20 steps of a ResNet with its buckets) before the
// vector grows; growth happens only inside the window.
constexpr std::size_t kReservedSpans = 8192;
}  // namespace

int64_t now_ns() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

Recorder::Recorder() = default;

void Recorder::set_timeline(bool on) {
  if (on && spans_.capacity() == 0) spans_.reserve(kReservedSpans);
  if (on && !timeline_) bucket_begin_ns_.assign(bucket_begin_ns_.size(), -1);  // none in flight
  timeline_ = on;
}

void Recorder::reset_totals() {
  for (auto& totals : totals_) totals = CollectiveTotals{};
}

void Recorder::add_collective(Collective kind, const char* name, int64_t bytes, int64_t begin_ns,
                              int64_t end_ns) {
  CollectiveTotals& totals = totals_[static_cast<int>(kind)];
  totals.seconds += 1e-9 * static_cast<double>(end_ns - begin_ns);
  totals.bytes += bytes;
  totals.calls += 1;
  if (!timeline_) return;
  Span span;
  span.name = name;
  span.category = "syncbn";
  span.begin_ns = begin_ns;
  span.end_ns = end_ns;
  span.bytes = bytes;
  spans_.push_back(span);
}

void Recorder::bucket_launched(std::size_t index, int64_t bytes) {
  CollectiveTotals& totals = totals_[static_cast<int>(Collective::kGradient)];
  totals.bytes += bytes;
  totals.calls += 1;
  if (!timeline_) return;
  if (index >= bucket_begin_ns_.size()) {  // the first step of the window only
    bucket_begin_ns_.resize(index + 1, -1);
    bucket_bytes_.resize(index + 1, 0);
  }
  bucket_begin_ns_[index] = now_ns();
  bucket_bytes_[index] = bytes;
}

void Recorder::bucket_completed(std::size_t index) {
  // Polled repeatedly: only the first report after a launch in the window ends a span.
  if (!timeline_ || index >= bucket_begin_ns_.size() || bucket_begin_ns_[index] < 0) return;
  Span span;
  span.name = "gradient bucket allreduce";
  span.category = "gradient";
  span.begin_ns = bucket_begin_ns_[index];
  span.end_ns = now_ns();
  span.bytes = bucket_bytes_[index];
  span.index = static_cast<int64_t>(index);
  span.track = Track::kGradientBuckets;
  spans_.push_back(span);
  bucket_begin_ns_[index] = -1;
}

Recorder* current() { return installed; }

Install::Install(Recorder* recorder) : previous_(installed) { installed = recorder; }

Install::~Install() { installed = previous_; }

}  // namespace syncbn::profile
