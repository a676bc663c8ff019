// A stuck collective ends the whole job through the watchdog, at -np 2: rank 0's main thread
// blocks inside MPI (a receive nobody sends) while rank 1 waits in a barrier rank 0 never joins;
// rank 0's watchdog sees its collective exceed a 1 s timeout and calls abort_job from its own
// thread, which must end the job without an MPI call (MPI_THREAD_FUNNELED) and with the
// message "rank 0: ... did not complete within 1 s". Driven by tests/e2e/watchdog_abort_test.sh.
#include <mpi.h>

#include <chrono>
#include <string>

#include "distributed/comm_watchdog.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"

int main() {
  return syncbn::dist::run_and_abort_on_error([] {
    syncbn::dist::Runtime runtime;
    auto world = runtime.world();
    SYNCBN_CHECK(world->size() == 2, "run with mpirun -np 2");
    if (world->rank() == 1) {
      MPI_Barrier(MPI_COMM_WORLD);  // rank 0 never joins
      return 0;
    }
    syncbn::dist::CommWatchdog::Options options;
    options.backend = "MPI";
    options.comm_size = world->size();
    options.timeout_seconds = 1;
    options.poll_interval = std::chrono::milliseconds(50);
    syncbn::dist::CommWatchdog watchdog(
        options, [] { return std::string(); },
        [](const std::string& message) { syncbn::dist::abort_job(message); });
    watchdog.watch("allreduce", 8, syncbn::dist::DataType::kFloat32,
                   [](std::string&) { return syncbn::dist::CollectiveState::kRunning; });
    int never = 0;
    MPI_Recv(&never, 1, MPI_INT, 1, 99, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return 0;
  });
}
