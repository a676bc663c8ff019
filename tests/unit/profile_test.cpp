#include "syncbn/profile.h"

#include <gtest/gtest.h>

#include <string>

namespace syncbn::profile {
namespace {

TEST(ProfileTest, HooksRecordNothingWithoutAnInstalledRecorder) {
  ASSERT_EQ(current(), nullptr);
  { const ScopedCollective timed(Collective::kSyncBn, "allreduce", 64); }
  bucket_launched(0, 128);
  bucket_completed(0);
  Recorder recorder;  // not installed: the hooks above could not reach it, nor can these
  { const ScopedSpan span("forward", "phase"); }
  EXPECT_EQ(recorder.totals(Collective::kSyncBn).calls, 0);
  EXPECT_TRUE(recorder.spans().empty());
}

TEST(ProfileTest, InstallIsPerScopeAndRestoresThePreviousRecorder) {
  Recorder outer, inner;
  {
    const Install a(&outer);
    EXPECT_EQ(current(), &outer);
    {
      const Install b(&inner);
      EXPECT_EQ(current(), &inner);
    }
    EXPECT_EQ(current(), &outer);
  }
  EXPECT_EQ(current(), nullptr);
}

TEST(ProfileTest, CollectivesAddBytesAndCallsAlwaysButSpansOnlyInsideTheTimeline) {
  Recorder recorder;
  const Install install(&recorder);
  { const ScopedCollective timed(Collective::kSyncBn, "syncbn allreduce forward", 8 * 65); }
  { const ScopedSpan span("forward", "phase"); }
  EXPECT_TRUE(recorder.spans().empty());
  recorder.set_timeline(true);
  {
    const ScopedSpan outer("forward", "phase");
    const ScopedCollective timed(Collective::kSyncBn, "syncbn allreduce backward", 8 * 64);
  }
  recorder.set_timeline(false);
  { const ScopedCollective timed(Collective::kSyncBn, "syncbn allreduce forward", 8); }

  const CollectiveTotals& totals = recorder.totals(Collective::kSyncBn);
  EXPECT_EQ(totals.calls, 3);
  EXPECT_EQ(totals.bytes, 8 * 65 + 8 * 64 + 8);
  EXPECT_GE(totals.seconds, 0.0);
  EXPECT_EQ(recorder.totals(Collective::kGradient).calls, 0);
  // The collective ends before the enclosing span: it is recorded first, and nests inside.
  ASSERT_EQ(recorder.spans().size(), 2u);
  const Span& collective = recorder.spans()[0];
  const Span& forward = recorder.spans()[1];
  EXPECT_EQ(std::string(collective.name), "syncbn allreduce backward");
  EXPECT_EQ(collective.bytes, 8 * 64);
  EXPECT_EQ(std::string(forward.name), "forward");
  EXPECT_EQ(forward.bytes, -1);
  EXPECT_LE(forward.begin_ns, collective.begin_ns);
  EXPECT_LE(collective.begin_ns, collective.end_ns);
  EXPECT_LE(collective.end_ns, forward.end_ns);

  recorder.reset_totals();
  EXPECT_EQ(recorder.totals(Collective::kSyncBn).calls, 0);
  EXPECT_EQ(recorder.totals(Collective::kSyncBn).bytes, 0);
}

TEST(ProfileTest, ABucketSpanRunsFromLaunchToTheFirstReportOfCompletion) {
  Recorder recorder;
  const Install install(&recorder);
  bucket_launched(1, 400);  // outside the timeline: counted, no span
  bucket_completed(1);
  recorder.set_timeline(true);
  bucket_launched(0, 1000);
  bucket_launched(1, 400);
  bucket_completed(1);
  bucket_completed(1);  // polled again after completion: no second span
  bucket_completed(0);
  bucket_completed(7);  // never launched: ignored
  const CollectiveTotals& totals = recorder.totals(Collective::kGradient);
  EXPECT_EQ(totals.calls, 3);
  EXPECT_EQ(totals.bytes, 400 + 1000 + 400);
  ASSERT_EQ(recorder.spans().size(), 2u);
  EXPECT_EQ(recorder.spans()[0].index, 1);
  EXPECT_EQ(recorder.spans()[0].bytes, 400);
  EXPECT_EQ(recorder.spans()[1].index, 0);
  EXPECT_EQ(recorder.spans()[1].bytes, 1000);
  for (const Span& span : recorder.spans()) {
    EXPECT_EQ(span.track, Track::kGradientBuckets);
    EXPECT_LE(span.begin_ns, span.end_ns);
  }
  // Bucket 1 launched at or after bucket 0 and completed first: it lies within bucket 0's span.
  EXPECT_GE(recorder.spans()[0].begin_ns, recorder.spans()[1].begin_ns);
}

}  // namespace
}  // namespace syncbn::profile
