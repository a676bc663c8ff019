#include "train/timeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "syncbn/error.h"

namespace syncbn::train {
namespace {

profile::Span span(const char* name, int64_t begin_ns, int64_t end_ns,
                   profile::Track track = profile::Track::kMain, int64_t index = -1) {
  profile::Span s;
  s.name = name;
  s.category = "test";
  s.begin_ns = begin_ns;
  s.end_ns = end_ns;
  s.index = index;
  s.track = track;
  if (track == profile::Track::kGradientBuckets) s.bytes = 4096;
  return s;
}

std::vector<nlohmann::json> complete_events(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (const auto& event : nlohmann::json::parse(text)) {
    if (event["ph"] == "X") out.push_back(event);
  }
  return out;
}

TEST(TimelineTest, SpansBecomeCompleteEventsInMicrosecondsFromTheOrigin) {
  const int64_t origin = 1'000'000;
  const auto events = complete_events(
      trace_events_json({span("forward", origin + 2'500, origin + 10'000)}, 3, origin));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["name"], "forward");
  EXPECT_EQ(events[0]["pid"], 3);
  EXPECT_EQ(events[0]["tid"], 0);
  EXPECT_DOUBLE_EQ(events[0]["ts"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(events[0]["dur"].get<double>(), 7.5);
  EXPECT_FALSE(events[0].contains("args"));
}

TEST(TimelineTest, OverlappingBucketsGetLanesInWhichNoTwoSpansOverlap) {
  using profile::Track;
  // Buckets 0..3: 0 and 1 overlap, 2 overlaps both, 3 starts when 0 has ended.
  const std::vector<profile::Span> spans = {
      span("backward", 0, 100),
      span("bucket", 10, 50, Track::kGradientBuckets, 0),
      span("bucket", 20, 80, Track::kGradientBuckets, 1),
      span("bucket", 30, 90, Track::kGradientBuckets, 2),
      span("bucket", 50, 95, Track::kGradientBuckets, 3),
  };
  const auto events = complete_events(trace_events_json(spans, 0, 0));
  ASSERT_EQ(events.size(), spans.size());
  std::map<int, std::vector<std::pair<double, double>>> by_tid;
  std::map<int64_t, int> tid_of_bucket;
  for (const auto& e : events) {
    const double ts = e["ts"].get<double>();
    by_tid[e["tid"].get<int>()].emplace_back(ts, ts + e["dur"].get<double>());
    if (e.contains("args")) {
      EXPECT_EQ(e["args"]["bytes"], 4096);
      tid_of_bucket[e["args"]["bucket"].get<int64_t>()] = e["tid"].get<int>();
    }
  }
  EXPECT_EQ(by_tid[0].size(), 1u);  // backward alone on the training thread
  EXPECT_EQ(by_tid.size(), 4u);     // three lanes are needed at 30 ns
  for (auto& [tid, intervals] : by_tid) {
    std::sort(intervals.begin(), intervals.end());
    for (std::size_t i = 1; i < intervals.size(); ++i)
      EXPECT_LE(intervals[i - 1].second, intervals[i].first) << "tid " << tid;
  }
  EXPECT_EQ(tid_of_bucket[3], tid_of_bucket[0]);  // reuses the lane that bucket 0 freed
  EXPECT_NE(tid_of_bucket[0], 0);
}

TEST(TimelineTest, RanksAreNamedProcessesAndTheWrittenTraceMergesThem) {
  const std::string rank0 =
      trace_events_json({span("step", 0, 10, profile::Track::kMain, 1)}, 0, 0);
  const std::string rank1 =
      trace_events_json({span("bucket", 0, 5, profile::Track::kGradientBuckets, 0)}, 1, 0);
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("syncbn_timeline_test." + std::to_string(getpid()) + ".json");
  write_trace(path.string(), {rank0, rank1});
  std::ifstream in(path);
  const nlohmann::json trace = nlohmann::json::parse(in);
  std::filesystem::remove(path);

  std::set<int> pids;
  std::map<std::pair<int, int>, std::string> thread_names;
  std::map<int, std::string> process_names;
  for (const auto& e : trace["traceEvents"]) {
    pids.insert(e["pid"].get<int>());
    if (e["name"] == "process_name") process_names[e["pid"]] = e["args"]["name"];
    if (e["name"] == "thread_name") thread_names[{e["pid"], e["tid"]}] = e["args"]["name"];
    if (e["name"] == "step") EXPECT_EQ(e["args"]["step"], 1);
  }
  EXPECT_EQ(pids, (std::set<int>{0, 1}));
  EXPECT_EQ(process_names[1], "rank 1");
  EXPECT_EQ((thread_names[{0, 0}]), "training thread");
  EXPECT_EQ((thread_names[{1, 1}]), "gradient allreduce 0");
}

TEST(TimelineTest, AnUnwritablePathIsAnErrorNamingIt) {
  try {
    write_trace("/nonexistent-dir/trace.json", {"[]"});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/trace.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace syncbn::train
