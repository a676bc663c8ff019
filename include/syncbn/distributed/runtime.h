#pragma once
// Runtime: the one process-wide context of a distributed program. It initialises MPI (unless
// something else already did) and finalises it at the end; a program started without mpirun is
// a world of one (an MPI singleton). Errors end the whole job through abort_job, so that no rank
// waits forever in a collective that a failed rank will never join.
//
//   int main() {
//     return syncbn::dist::run_and_abort_on_error([&] {
//       syncbn::dist::Runtime runtime;
//       auto world = runtime.world();
//       ...
//       return 0;
//     });
//   }
#include <functional>
#include <memory>
#include <string>

#include "syncbn/distributed/communicator.h"

namespace syncbn::dist {

class Runtime {
 public:
  // MPI_Init_thread with MPI_THREAD_FUNNELED (only the main thread calls MPI), unless MPI is
  // already initialised, in which case this Runtime neither initialises nor finalises it.
  Runtime();
  // Calls MPI_Finalize if this Runtime initialised MPI, except while an exception is unwinding
  // through it: MPI_Finalize waits for the other ranks, so the failing rank must reach
  // abort_job (run_and_abort_on_error) instead.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  std::shared_ptr<Communicator> world() const { return world_; }
  // True when this Runtime called MPI_Init_thread (and so will call MPI_Finalize).
  bool owns_mpi() const { return owns_mpi_; }

 private:
  bool owns_mpi_ = false;
  int uncaught_exceptions_at_start_ = 0;
  std::shared_ptr<Communicator> world_;
};

// Prints "rank R: message" to stderr (R = world rank; only the message when MPI is not running)
// and ends the job: MPI_Abort(MPI_COMM_WORLD, exit_code) when the world has several ranks, so
// that the others stop within seconds; with one rank, MPI_Finalize and exit(exit_code).
// Called on a thread other than MPI's main thread (the communication watchdog), it makes no MPI
// call (MPI_THREAD_FUNNELED) and ends the process with _Exit(exit_code): the launcher then ends
// the other ranks.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

// Runs body and returns its result; an exception (syncbn::Error or any other) goes to
// abort_job with its message. Every program's main wraps itself in this.
int run_and_abort_on_error(const std::function<int()>& body);

}  // namespace syncbn::dist
