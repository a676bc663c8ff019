#pragma once
// CommWatchdog: a thread that watches the collectives a communicator has in flight and reports
// the first one that does not complete within the timeout, or an error of the backend
// (docs/DESIGN.md §6: a stuck job ends with a message, not forever).
//
// Backend-neutral and free of CUDA types: a collective is watched through a probe that says
// whether it has completed (for NCCL, a query of the CUDA event recorded after it), and the
// backend's health through a function that returns an error text (for NCCL,
// ncclCommGetAsyncError). On the first failure the watchdog stops watching and calls the failure
// handler once, on its own thread; the NCCL backend's handler aborts the NCCL communicator and
// ends the job (abort_job), since a rank stuck in a collective cannot be unstuck otherwise.
//
// The timeout counts from the moment the collective was handed to the backend (host time), so it
// includes the wait for the GPU work queued before it and for the slowest rank to join; that is
// the time a user waits. SYNCBN_COMM_TIMEOUT (seconds, default 300, 0 = no timeout) sets it.
//
// The MPI backend watches its collectives through tickets (watch_until_done / done): MPI calls
// block the calling thread, and MPI_THREAD_FUNNELED forbids the watchdog thread to ask MPI, so
// the caller itself says when a collective has returned.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include "syncbn/distributed/communicator.h"

namespace syncbn::dist {

constexpr double kDefaultCommTimeoutSeconds = 300;

// Parses a value of SYNCBN_COMM_TIMEOUT: a finite number of seconds >= 0 (0 means no timeout);
// nullptr or "" gives kDefaultCommTimeoutSeconds. Anything else throws syncbn::Error naming the
// variable and the value.
double parse_comm_timeout(const char* text);
// parse_comm_timeout(getenv("SYNCBN_COMM_TIMEOUT")).
double comm_timeout_seconds();

// "NCCL allreduce of 1052 float32 elements on communicator of 4 ranks did not complete within
// 300 s", followed by what to check.
std::string stuck_collective_message(const std::string& backend, const std::string& op,
                                     int64_t count, DataType type, int comm_size,
                                     double timeout_seconds);
// The same with " at training step 17" after the timeout when step >= 0.
std::string stuck_collective_message(const std::string& backend, const std::string& op,
                                     int64_t count, DataType type, int comm_size,
                                     double timeout_seconds, int64_t step);

// The training step this process is at, for the watchdogs' messages: the trainer sets it before
// each step; -1 (the initial value) means outside training. One relaxed atomic store or load.
void set_current_step(int64_t step);
int64_t current_step();

enum class CollectiveState { kRunning, kDone, kFailed };

class CommWatchdog {
 public:
  // Says whether one collective has completed; on kFailed, sets `error`. Called on the watchdog
  // thread, under the watchdog's lock: it must be quick and must not call back into the watchdog.
  using Probe = std::function<CollectiveState(std::string& error)>;
  // Returns "" while the backend is healthy, else the error (a full sentence).
  using HealthCheck = std::function<std::string()>;
  // Called once, on the watchdog thread, with the message of the first failure. May not return.
  using FailureHandler = std::function<void(const std::string& message)>;

  // A plain aggregate, not a SYNCBN_ARG options class: internal to the backends, filled once (by
  // make_nccl_watchdog, and a test helper), and it holds a callable: as an option it would be
  // run as options_.thread_setup()(), and options_.thread_setup() would compile as a getter call
  // that runs nothing.
  struct Options {
    std::string backend = "NCCL";  // first word of the messages
    int comm_size = 1;
    double timeout_seconds = kDefaultCommTimeoutSeconds;  // 0: no timeout
    std::chrono::milliseconds poll_interval{100};
    // Runs first on the watchdog thread (the NCCL backend makes its GPU current there).
    std::function<void()> thread_setup;
  };

  CommWatchdog(Options options, HealthCheck health, FailureHandler on_failure);
  // Stops the thread and waits for it (returns within one probe round, not one poll interval).
  ~CommWatchdog();
  CommWatchdog(const CommWatchdog&) = delete;
  CommWatchdog& operator=(const CommWatchdog&) = delete;

  // Watches a collective from now until its probe reports kDone.
  void watch(const char* op, int64_t count, DataType type, Probe probe);

  // A collective watched until done() is called with its ticket. An empty ticket (the watchdog
  // has already failed) is fine to pass to done().
  class Ticket {
   public:
    Ticket() = default;
    explicit operator bool() const { return entry_ != nullptr; }

   private:
    friend class CommWatchdog;
    void* entry_ = nullptr;
  };
  // Watches a collective from now until done(ticket). Costs what watch() does: one list node.
  Ticket watch_until_done(const char* op, int64_t count, DataType type);
  // Marks the collective of `ticket` completed and empties the ticket; a no-op on an empty one.
  // Every ticket must be passed here before the watchdog is destroyed or it reports a timeout.
  void done(Ticket& ticket);

  // Collectives watched and not yet seen complete (the watchdog forgets them lazily, at its next
  // round). For tests and diagnostics.
  std::size_t in_flight() const;
  // True once the failure handler has been called.
  bool failed() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string op;
    int64_t count;
    DataType type;
    Clock::time_point start;
    Probe probe;             // empty for an entry watched through a ticket
    int64_t step = -1;       // current_step() when the collective was issued
    bool completed = false;  // set by done() for an entry watched through a ticket
  };

  void run();
  // One round: forgets completed collectives; returns the failure message, or "".
  std::string check_locked(Clock::time_point now);

  const Options options_;
  const HealthCheck health_;
  const FailureHandler on_failure_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::list<Entry> entries_;
  bool stop_ = false;
  bool failed_ = false;
  std::thread thread_;  // last: starts after every other member is ready
};

}  // namespace syncbn::dist
