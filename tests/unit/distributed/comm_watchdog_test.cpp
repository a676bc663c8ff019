#include "distributed/comm_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "syncbn/error.h"

namespace syncbn::dist {
namespace {

using namespace std::chrono_literals;

TEST(CommTimeoutTest, UnsetOrEmptyGivesTheDefaultOf300Seconds) {
  EXPECT_EQ(parse_comm_timeout(nullptr), 300.0);
  EXPECT_EQ(parse_comm_timeout(""), 300.0);
  EXPECT_EQ(kDefaultCommTimeoutSeconds, 300.0);
}

TEST(CommTimeoutTest, AcceptsSecondsAndZeroForNoTimeout) {
  EXPECT_EQ(parse_comm_timeout("60"), 60.0);
  EXPECT_EQ(parse_comm_timeout("2.5"), 2.5);
  EXPECT_EQ(parse_comm_timeout("1e3"), 1000.0);
  EXPECT_EQ(parse_comm_timeout("0"), 0.0);
}

TEST(CommTimeoutTest, RejectsValuesThatAreNotSecondsNamingTheVariable) {
  for (const char* bad : {"-1", "abc", "5s", " ", "nan", "inf", "1e999", "0x", "--3"}) {
    try {
      parse_comm_timeout(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("SYNCBN_COMM_TIMEOUT"), std::string::npos) << message;
      EXPECT_NE(message.find(std::string("'") + bad + "'"), std::string::npos) << message;
    }
  }
}

TEST(CommTimeoutTest, MessageNamesTheCollectiveItsSizeTheRanksAndTheLimit) {
  const std::string message =
      stuck_collective_message("NCCL", "allreduce", 1052, DataType::kFloat32, 4, 300);
  EXPECT_EQ(message.rfind("NCCL allreduce of 1052 float32 elements on communicator of 4 ranks "
                          "did not complete within 300 s",
                          0),
            0u)
      << message;
  EXPECT_NE(message.find("SYNCBN_COMM_TIMEOUT"), std::string::npos) << message;
  const std::string one =
      stuck_collective_message("NCCL", "broadcast", 1, DataType::kInt64, 1, 0.5);
  EXPECT_EQ(one.rfind("NCCL broadcast of 1 int64 element on communicator of 1 rank did not "
                      "complete within 0.5 s",
                      0),
            0u)
      << one;
}

// Collects the failure handler's calls, and lets a test wait for the first.
class FailureLog {
 public:
  CommWatchdog::FailureHandler handler() {
    return [this](const std::string& message) {
      std::lock_guard<std::mutex> lock(mutex_);
      messages_.push_back(message);
      changed_.notify_all();
    };
  }
  // The first message, or "" when none came within `limit`.
  std::string wait_first(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, limit, [this] { return !messages_.empty(); });
    return messages_.empty() ? std::string() : messages_.front();
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> messages_;
};

CommWatchdog::Options fast_options(double timeout_seconds, int comm_size = 4) {
  CommWatchdog::Options options;
  options.backend = "NCCL";
  options.comm_size = comm_size;
  options.timeout_seconds = timeout_seconds;
  options.poll_interval = 5ms;
  return options;
}

CommWatchdog::Probe never_completes() {
  return [](std::string&) { return CollectiveState::kRunning; };
}

TEST(CommWatchdogTest, ReportsACollectiveThatDoesNotCompleteWithinTheTimeout) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(0.05), nullptr, log.handler());
  watchdog.watch("allreduce", 1052, DataType::kFloat32, never_completes());
  const std::string message = log.wait_first(5s);
  EXPECT_EQ(message,
            stuck_collective_message("NCCL", "allreduce", 1052, DataType::kFloat32, 4, 0.05));
  EXPECT_TRUE(watchdog.failed());
}

TEST(CommWatchdogTest, ForgetsCompletedCollectivesAndStaysQuiet) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(0.05), nullptr, log.handler());
  std::atomic<bool> done{false};
  watchdog.watch("allreduce", 8, DataType::kFloat64, [&done](std::string&) {
    return done.load() ? CollectiveState::kDone : CollectiveState::kRunning;
  });
  for (int i = 0; i < 100; ++i) {
    watchdog.watch("broadcast", 3, DataType::kInt32,
                   [](std::string&) { return CollectiveState::kDone; });
  }
  done = true;
  // Far longer than the timeout: nothing may fire for completed collectives.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(log.count(), 0u);
  EXPECT_EQ(watchdog.in_flight(), 0u);
  EXPECT_FALSE(watchdog.failed());
}

TEST(CommWatchdogTest, ATimeoutOfZeroNeverFires) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(0), nullptr, log.handler());
  watchdog.watch("allreduce", 1, DataType::kFloat32, never_completes());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(log.count(), 0u);
  EXPECT_EQ(watchdog.in_flight(), 1u);
}

TEST(CommWatchdogTest, ReportsAFailedCollectiveWithTheBackendsError) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(300, 2), nullptr, log.handler());
  watchdog.watch("allgather", 517, DataType::kInt32, [](std::string& error) {
    error = "CUDA error cudaErrorIllegalAddress (an illegal memory access was encountered)";
    return CollectiveState::kFailed;
  });
  EXPECT_EQ(log.wait_first(5s),
            "NCCL allgather of 517 int32 elements on communicator of 2 ranks failed: CUDA error "
            "cudaErrorIllegalAddress (an illegal memory access was encountered)");
}

TEST(CommWatchdogTest, ReportsAnUnhealthyBackendWithoutAnyCollective) {
  FailureLog log;
  CommWatchdog watchdog(
      fast_options(300), [] { return std::string("remote process exited"); }, log.handler());
  EXPECT_EQ(log.wait_first(5s), "remote process exited");
}

TEST(CommWatchdogTest, CallsTheFailureHandlerOnceAndStopsWatching) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(0.01), nullptr, log.handler());
  for (int i = 0; i < 10; ++i) watchdog.watch("allreduce", i, DataType::kUint8, never_completes());
  EXPECT_FALSE(log.wait_first(5s).empty());
  watchdog.watch("allreduce", 1, DataType::kUint8, never_completes());
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(log.count(), 1u);
  EXPECT_EQ(watchdog.in_flight(), 0u);
}

TEST(CommWatchdogTest, AProbeThatThrowsIsReportedAsAFailure) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(300), nullptr, log.handler());
  watchdog.watch("allreduce", 4, DataType::kFloat32,
                 [](std::string&) -> CollectiveState { throw Error("event query failed"); });
  EXPECT_EQ(log.wait_first(5s), "NCCL watchdog: event query failed");
}

TEST(CommWatchdogTest, DestructionStopsTheThreadWithoutWaitingForThePollInterval) {
  FailureLog log;
  auto options = fast_options(300);
  options.poll_interval = 60s;
  const auto start = std::chrono::steady_clock::now();
  {
    CommWatchdog watchdog(options, nullptr, log.handler());
    watchdog.watch("allreduce", 1, DataType::kFloat32, never_completes());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(log.count(), 0u);
}

TEST(CommWatchdogTest, RunsTheThreadSetupFirstOnItsThread) {
  FailureLog log;
  auto options = fast_options(300);
  std::atomic<bool> ran{false};
  std::thread::id setup_thread;
  options.thread_setup = [&] {
    setup_thread = std::this_thread::get_id();
    ran = true;
  };
  {
    CommWatchdog watchdog(options, nullptr, log.handler());
    for (int i = 0; i < 1000 && !ran; ++i) std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(ran);
  EXPECT_NE(setup_thread, std::this_thread::get_id());
}

TEST(CommTimeoutTest, MessageNamesTheStepWhenKnownAndOmitsAnEmptyPayload) {
  const std::string message =
      stuck_collective_message("MPI", "allreduce", 3, DataType::kFloat64, 2, 3, 17);
  EXPECT_EQ(message.rfind("MPI allreduce of 3 float64 elements on communicator of 2 ranks did "
                          "not complete within 3 s at training step 17;",
                          0),
            0u)
      << message;
  EXPECT_EQ(stuck_collective_message("MPI", "allreduce", 3, DataType::kFloat64, 2, 3, -1),
            stuck_collective_message("MPI", "allreduce", 3, DataType::kFloat64, 2, 3));
  const std::string barrier = stuck_collective_message("MPI", "barrier", 0, DataType::kUint8, 2, 3);
  EXPECT_EQ(barrier.rfind("MPI barrier on communicator of 2 ranks did not complete within 3 s", 0),
            0u)
      << barrier;
}

TEST(CommWatchdogTest, ReportsATicketNotMarkedDoneWithTheStepItWasIssuedAt) {
  FailureLog log;
  CommWatchdog::Options options = fast_options(0.05, 2);
  options.backend = "MPI";
  CommWatchdog watchdog(options, nullptr, log.handler());
  set_current_step(17);
  CommWatchdog::Ticket ticket = watchdog.watch_until_done("allreduce", 3, DataType::kFloat64);
  set_current_step(-1);
  EXPECT_TRUE(ticket);
  EXPECT_EQ(log.wait_first(5s),
            stuck_collective_message("MPI", "allreduce", 3, DataType::kFloat64, 2, 0.05, 17));
  // After the failure the entries are gone: done() must not touch them.
  watchdog.done(ticket);
  EXPECT_FALSE(ticket);
  EXPECT_FALSE(watchdog.watch_until_done("barrier", 0, DataType::kUint8));
}

TEST(CommWatchdogTest, TicketsMarkedDoneAreForgottenAndStayQuiet) {
  FailureLog log;
  CommWatchdog watchdog(fast_options(0.05), nullptr, log.handler());
  CommWatchdog::Ticket slow = watchdog.watch_until_done("iallreduce", 8, DataType::kFloat32);
  for (int i = 0; i < 100; ++i) {
    CommWatchdog::Ticket quick = watchdog.watch_until_done("allreduce", 1, DataType::kInt64);
    watchdog.done(quick);
    EXPECT_FALSE(quick);
    watchdog.done(quick);  // an empty ticket: a no-op
  }
  std::this_thread::sleep_for(20ms);
  watchdog.done(slow);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(log.count(), 0u);
  EXPECT_EQ(watchdog.in_flight(), 0u);
  EXPECT_FALSE(watchdog.failed());
}

TEST(CommWatchdogTest, CurrentStepIsProcessWide) {
  set_current_step(5);
  int64_t seen = 0;
  std::thread([&seen] { seen = current_step(); }).join();
  EXPECT_EQ(seen, 5);
  set_current_step(-1);
}

}  // namespace
}  // namespace syncbn::dist
