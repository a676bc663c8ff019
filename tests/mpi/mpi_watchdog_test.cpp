// The MPI communicator's watchdog under mpirun with P = 1..4: SYNCBN_COMM_TIMEOUT is read when a
// communicator is made (a malformed value fails naming it), and collectives that complete, late
// ones included, never trip it. A collective that does not complete ends the job, which a gtest
// cannot survive: tests/e2e/stopped_rank_test.sh covers that.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {
namespace {

using namespace std::chrono_literals;

// Sets SYNCBN_COMM_TIMEOUT for the life of the object; unsets it afterwards.
class CommTimeout {
 public:
  explicit CommTimeout(const char* value) { setenv("SYNCBN_COMM_TIMEOUT", value, 1); }
  ~CommTimeout() { unsetenv("SYNCBN_COMM_TIMEOUT"); }
};

TEST(MpiWatchdogTest, AMalformedTimeoutFailsWhenTheCommunicatorIsMadeNamingIt) {
  CommTimeout timeout("soon");
  try {
    MpiCommunicator::world();
    ADD_FAILURE() << "a communicator was made with SYNCBN_COMM_TIMEOUT=soon";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("SYNCBN_COMM_TIMEOUT"), std::string::npos) << message;
    EXPECT_NE(message.find("'soon'"), std::string::npos) << message;
  }
}

TEST(MpiWatchdogTest, CompletedCollectivesNeverTripAShortTimeout) {
  CommTimeout timeout("2");  // far above a collective's time even on a loaded machine
  auto world = MpiCommunicator::world();
  auto group = world->split(0, world->rank());  // a communicator of its own, watched too
  ASSERT_NE(group, nullptr);
  // Many collectives, each far shorter than the timeout, for longer than the timeout in all.
  const auto end = std::chrono::steady_clock::now() + 2200ms;
  std::vector<float> values(64, 1.0f);
  int64_t rounds = 0;
  for (;;) {
    world->allreduce_sum(values.data(), 64, DataType::kFloat32);
    group->broadcast(values.data(), 64, DataType::kFloat32, 0);
    std::vector<float> gathered(64 * group->size());
    group->allgather(values.data(), gathered.data(), 64, DataType::kFloat32);
    auto request = world->iallreduce_sum(values.data(), 64, DataType::kFloat32);
    request->wait();
    world->barrier();
    std::fill(values.begin(), values.end(), 1.0f);
    // Every rank decides alike whether to go on (clocks differ): the loop ends on the sum.
    int64_t more = std::chrono::steady_clock::now() < end || rounds < 100 ? 1 : 0;
    world->allreduce_sum(&more, 1, DataType::kInt64);
    ++rounds;
    if (more == 0) break;
  }
  // A rank that arrives late, but within the timeout, is no failure.
  if (world->rank() == 0) std::this_thread::sleep_for(500ms);
  world->barrier();
  // The process is still here: no watchdog ended it.
  SUCCEED() << rounds << " rounds";
}

}  // namespace
}  // namespace syncbn::dist
