#include "syncbn/distributed/runtime.h"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "syncbn/distributed/launch_env.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

// The world rank, recorded when the Runtime starts, so that abort_job on a thread other
// than the main one (the communication watchdog) can name the rank without calling MPI: under
// MPI_THREAD_FUNNELED only the main thread may make MPI calls.
std::atomic<int> world_rank{-1};

}  // namespace

Runtime::Runtime() : uncaught_exceptions_at_start_(std::uncaught_exceptions()) {
  int initialized = 0;
  int finalized = 0;
  SYNCBN_MPI_CHECK(MPI_Initialized(&initialized));
  SYNCBN_MPI_CHECK(MPI_Finalized(&finalized));
  SYNCBN_CHECK(!finalized,
               "MPI was already finalised and cannot start again: create one "
               "syncbn::dist::Runtime for the whole program");
  if (!initialized) {
    // Without mpirun, Open MPI starts as a singleton: a world of one.
    int provided = MPI_THREAD_SINGLE;
    SYNCBN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    owns_mpi_ = true;
    SYNCBN_CHECK(provided >= MPI_THREAD_FUNNELED,
                 "this MPI library does not support MPI_THREAD_FUNNELED (provided level ", provided,
                 "); OpenMP threads next to MPI need it");
  }
  world_ = MpiCommunicator::world();
  world_rank = world_->rank();
}

Runtime::~Runtime() {
  world_.reset();
  if (!owns_mpi_ || std::uncaught_exceptions() > uncaught_exceptions_at_start_) return;
  // Not checked: a destructor cannot throw, and there is nothing left to do on failure.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort_job(const std::string& message, int exit_code) {
  // The first caller ends the process; a second thread arriving meanwhile (the communication
  // watchdog and the main thread can fail together) waits for that instead of racing it.
  static std::atomic_flag aborting = ATOMIC_FLAG_INIT;
  if (aborting.test_and_set()) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // MPI_Initialized, MPI_Finalized and MPI_Is_thread_main may be called from any thread; the
  // MPI calls here are not checked: this is the error path already, and it must end the process
  // whatever happens.
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool running = initialized && !finalized;
  int is_main = 1;
  if (running) MPI_Is_thread_main(&is_main);
  if (running && !is_main) {
    // Another thread (the watchdog) while the main thread may be inside MPI: no MPI call is
    // allowed here under MPI_THREAD_FUNNELED. Exiting without MPI_Finalize makes the launcher
    // end the other ranks (mpirun does on any abnormal exit; syncbn-run gives srun
    // --kill-on-bad-exit=1).
    int rank = world_rank.load();
    if (rank < 0) {  // MPI started without a Runtime (the tests): ask the launcher's variables
      try {
        const LaunchEnv env = read_launch_env();
        if (env.source != "none") rank = env.rank;
      } catch (...) {
      }
    }
    if (rank >= 0) {
      std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
    } else {
      std::fprintf(stderr, "%s\n", message.c_str());
    }
    std::fflush(stderr);
    std::_Exit(exit_code);
  }
  int rank = 0;
  int size = 1;
  if (running) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
  } else {
    std::fprintf(stderr, "%s\n", message.c_str());
  }
  std::fflush(stderr);
  // The other ranks may be waiting in a collective this rank will never join: end them all.
  if (running && size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  if (running) MPI_Finalize();
  std::exit(exit_code);
}

int run_and_abort_on_error(const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& error) {
    abort_job(error.what());
  } catch (...) {
    abort_job("unknown exception (not derived from std::exception)");
  }
}

}  // namespace syncbn::dist
