#include "distributed/comm_watchdog.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <utility>

#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

// "NCCL allreduce of 1052 float32 elements on communicator of 4 ranks"
std::string describe_collective(const std::string& backend, const std::string& op, int64_t count,
                                DataType type, int comm_size) {
  std::ostringstream out;
  out << backend << " " << op << " of " << count << " " << data_type_name(type)
      << (count == 1 ? " element" : " elements") << " on communicator of " << comm_size
      << (comm_size == 1 ? " rank" : " ranks");
  return out.str();
}

}  // namespace

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
  std::ostringstream out;
  out << describe_collective(backend, op, count, type, comm_size) << " did not complete within "
      << timeout_seconds
      << " s; a rank may have failed or stopped, or the ranks called collectives in different "
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
  entries_.push_back(Entry{op, count, type, Clock::now(), std::move(probe)});
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
    const CollectiveState state = it->probe(error);
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
                                      options_.comm_size, options_.timeout_seconds);
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
