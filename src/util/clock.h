#pragma once
// Seconds on a steady (monotonic) clock: for measuring intervals, never for dates.
#include <chrono>

namespace syncbn {

inline double now_seconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

}  // namespace syncbn
