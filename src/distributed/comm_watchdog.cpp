#include "distributed/comm_watchdog.h"

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <utility>

#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

// "NCCL allreduce of 1052 float32 elements on communicator of 4 ranks", "MPI barrier on
// communicator of 2 ranks"
std::string describe_collective(const std::string& backend, const std::string& op, int64_t count,
                                DataType type, int comm_size) {
  std::ostringstream out;
  out << backend << " " << op;
  // A collective without data (MPI barrier, split) is watched with count 0.
  if (count > 0) {
    out << " of " << count << " " << data_type_name(type)
        << (count == 1 ? " element" : " elements");
  }
  out << " on communicator of " << comm_size << (comm_size == 1 ? " rank" : " ranks");
  return out.str();
}

std::atomic<int64_t> g_current_step{-1};

}  // namespace

void set_current_step(int64_t step) { g_current_step.store(step, std::memory_order_relaxed); }

int64_t current_step() { return g_current_step.load(std::memory_order_relaxed); }

double parse_comm_timeout(const char* text) {
  if (text == nullptr || *text == '\0') return kDefaultCommTimeoutSeconds;
  errno = 0;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  const bool parsed = end != text && *end == '\0' && errno != ERANGE;
  SYNCBN_CHECK(parsed && std::isfinite(seconds) && seconds >= 0,
               "SYNCBN_COMM_TIMEOUT must be a number of seconds >= 0 (0 disables the timeout of "
               "collectives), got '",
               text, "'");
  return seconds;
}

double comm_timeout_seconds() { return parse_comm_timeout(std::getenv("SYNCBN_COMM_TIMEOUT")); }

std::string stuck_collective_message(const std::string& backend, const std::string& op,
                                     int64_t count, DataType type, int comm_size,
                                     double timeout_seconds) {
  return stuck_collective_message(backend, op, count, type, comm_size, timeout_seconds, -1);
}

std::string stuck_collective_message(const std::string& backend, const std::string& op,
                                     int64_t count, DataType type, int comm_size,
                                     double timeout_seconds, int64_t step) {
  std::ostringstream out;
  out << describe_collective(backend, op, count, type, comm_size) << " did not complete within "
      << timeout_seconds << " s";
  if (step >= 0) out << " at training step " << step;
  out << "; a rank may have failed or stopped, or the ranks called collectives in different "
         "orders (SYNCBN_COMM_TIMEOUT sets the limit in seconds)";
  return out.str();
}

CommWatchdog::CommWatchdog(Options options, HealthCheck health, FailureHandler on_failure)
    : options_(std::move(options)),
      health_(std::move(health)),
      on_failure_(std::move(on_failure)),
      thread_([this] { run(); }) {}

CommWatchdog::~CommWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CommWatchdog::watch(const char* op, int64_t count, DataType type, Probe probe) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_) return;  // the job is ending; nothing more to watch
  entries_.push_back(Entry{op, count, type, Clock::now(), std::move(probe), current_step()});
}

CommWatchdog::Ticket CommWatchdog::watch_until_done(const char* op, int64_t count, DataType type) {
  Ticket ticket;
  std::lock_guard<std::mutex> lock(mutex_);
  if (failed_) return ticket;
  entries_.push_back(Entry{op, count, type, Clock::now(), Probe(), current_step()});
  ticket.entry_ = &entries_.back();  // list nodes stay put until the watchdog erases them
  return ticket;
}

void CommWatchdog::done(Ticket& ticket) {
  if (!ticket) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // After a failure the entries are gone (the list was cleared): nothing to mark.
    if (!failed_) static_cast<Entry*>(ticket.entry_)->completed = true;
  }
  ticket.entry_ = nullptr;
}

std::size_t CommWatchdog::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

bool CommWatchdog::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_;
}

std::string CommWatchdog::check_locked(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    std::string error;
    const CollectiveState state = it->probe       ? it->probe(error)
                                  : it->completed ? CollectiveState::kDone
                                                  : CollectiveState::kRunning;
    if (state == CollectiveState::kDone) {
      it = entries_.erase(it);
      continue;
    }
    if (state == CollectiveState::kFailed) {
      return describe_collective(options_.backend, it->op, it->count, it->type,
                                 options_.comm_size) +
             " failed: " + error;
    }
    const double elapsed = std::chrono::duration<double>(now - it->start).count();
    if (options_.timeout_seconds > 0 && elapsed > options_.timeout_seconds) {
      return stuck_collective_message(options_.backend, it->op, it->count, it->type,
                                      options_.comm_size, options_.timeout_seconds, it->step);
    }
    ++it;
  }
  return health_ ? health_() : std::string();
}

void CommWatchdog::run() {
  if (options_.thread_setup) {
    try {
      options_.thread_setup();
    } catch (const std::exception& error) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        failed_ = true;
      }
      on_failure_(options_.backend + " watchdog could not start: " + error.what());
      return;
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, options_.poll_interval, [this] { return stop_; });
    if (stop_) break;
    std::string message;
    try {
      message = check_locked(Clock::now());
    } catch (const std::exception& error) {
      message = options_.backend + " watchdog: " + error.what();
    }
    if (!message.empty()) {
      failed_ = true;
      entries_.clear();
      lock.unlock();
      on_failure_(message);
      return;
    }
  }
}

}  // namespace syncbn::dist
