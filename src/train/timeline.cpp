#include "train/timeline.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "syncbn/error.h"

namespace syncbn::train {

namespace {

using nlohmann::ordered_json;

// Microseconds from the origin, to the nanosecond.
double micros(int64_t ns, int64_t origin_ns) {
  return static_cast<double>(ns - origin_ns) / 1000.0;
}

ordered_json metadata(const char* what, int rank, int tid, const ordered_json& args) {
  return {{"name", what}, {"ph", "M"}, {"pid", rank}, {"tid", tid}, {"args", args}};
}

// The lane of each gradient-bucket span (tid = 1 + lane): the lowest lane whose last span ended
// before this one began, in order of beginning, so that spans in one lane never overlap.
std::vector<int> bucket_lanes(const std::vector<profile::Span>& spans) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    if (spans[i].track == profile::Track::kGradientBuckets) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return spans[a].begin_ns < spans[b].begin_ns;
  });
  std::vector<int> lane(spans.size(), 0);
  std::vector<int64_t> lane_end;
  for (std::size_t i : order) {
    std::size_t l = 0;
    while (l < lane_end.size() && lane_end[l] > spans[i].begin_ns) ++l;
    if (l == lane_end.size()) lane_end.push_back(0);
    lane_end[l] = spans[i].end_ns;
    lane[i] = static_cast<int>(l);
  }
  return lane;
}

}  // namespace

std::string trace_events_json(const std::vector<profile::Span>& spans, int rank,
                              int64_t origin_ns) {
  const std::vector<int> lanes = bucket_lanes(spans);
  ordered_json events = ordered_json::array();
  events.push_back(metadata("process_name", rank, 0, {{"name", "rank " + std::to_string(rank)}}));
  events.push_back(metadata("process_sort_index", rank, 0, {{"sort_index", rank}}));
  events.push_back(metadata("thread_name", rank, 0, {{"name", "training thread"}}));
  int lanes_named = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const profile::Span& s = spans[i];
    int tid = 0;
    if (s.track == profile::Track::kGradientBuckets) {
      tid = 1 + lanes[i];
      for (; lanes_named < tid; ++lanes_named) {
        events.push_back(metadata("thread_name", rank, lanes_named + 1,
                                  {{"name", "gradient allreduce " + std::to_string(lanes_named)}}));
      }
    }
    ordered_json event = {{"name", s.name},
                          {"cat", s.category},
                          {"ph", "X"},
                          {"pid", rank},
                          {"tid", tid},
                          {"ts", micros(s.begin_ns, origin_ns)},
                          {"dur", micros(s.end_ns, s.begin_ns)}};
    ordered_json args = ordered_json::object();
    if (s.bytes >= 0) args["bytes"] = s.bytes;
    if (s.index >= 0)
      args[s.track == profile::Track::kGradientBuckets ? "bucket" : "step"] = s.index;
    if (!args.empty()) event["args"] = std::move(args);
    events.push_back(std::move(event));
  }
  return events.dump();
}

void write_trace(const std::string& path, const std::vector<std::string>& rank_events) {
  ordered_json events = ordered_json::array();
  for (const std::string& text : rank_events) {
    for (auto& event : ordered_json::parse(text)) events.push_back(std::move(event));
  }
  const ordered_json trace = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  std::ofstream out(path, std::ios::trunc);
  SYNCBN_CHECK(out.good(), "--timeline ", path, ": cannot open for writing");
  out << trace.dump() << '\n';
  out.flush();
  SYNCBN_CHECK(out.good(), "--timeline ", path, ": cannot write");
}

}  // namespace syncbn::train
