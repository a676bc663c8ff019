#pragma once
// The --timeline file: Chrome trace-event JSON (https://ui.perfetto.dev, chrome://tracing) of
// every rank, merged by rank 0. Each rank is a process (pid = rank, named "rank R"); its
// training thread is tid 0; the gradient buckets in flight are tids 1, 2, ... ("gradient
// allreduce k"), one lane per bucket that overlaps another, so that the spans on every
// (pid, tid) nest. Spans are complete events ("ph": "X") with ts and dur in microseconds from
// the ranks' shared origin; collectives carry their payload in args.bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/profile.h"

namespace syncbn::train {

// This rank's spans as a JSON array of trace events, metadata events first.
std::string trace_events_json(const std::vector<profile::Span>& spans, int rank, int64_t origin_ns);

// Writes {"traceEvents": [...every rank's events...], "displayTimeUnit": "ms"} to `path`, from
// the arrays trace_events_json made on each rank. Throws naming the path when it cannot write.
void write_trace(const std::string& path, const std::vector<std::string>& rank_events);

}  // namespace syncbn::train
