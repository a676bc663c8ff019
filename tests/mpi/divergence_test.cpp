// DivergenceGuard under mpirun with P = 1..4: in record mode a non-finite loss on ONE rank stops
// every rank at the same step, with a collective in flight during "backward" (as DataParallel's
// buckets are; a single rank makes no collective); in stop mode only the rank that sees it
// throws, naming the step.
#include "train/divergence.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"

namespace syncbn::train {
namespace {

// What backward does between check_loss and diverged: another collective on the same
// communicator, which every rank must join.
void stand_in_backward(dist::Communicator& comm) {
  double gradient = 1.0;
  comm.allreduce_sum(&gradient, 1, dist::DataType::kFloat64);
  EXPECT_EQ(gradient, comm.size());
}

TEST(DivergenceTest, RecordModeStopsEveryRankAtTheStepOneRankDiverged) {
  auto comm = dist::MpiCommunicator::world();
  DivergenceGuard guard("record", *comm, 0.1);
  const int last = comm->size() - 1;
  const int64_t calls_before = comm->stats().allreduce_calls;
  for (int64_t step = 1; step <= 5; ++step) {
    const double loss = step == 3 && comm->rank() == last ? std::nan("") : 2.0;
    guard.check_loss(loss, step, 1);
    stand_in_backward(*comm);
    const bool diverged = guard.diverged(step, 1);
    EXPECT_EQ(diverged, step == 3) << "step " << step;
    if (diverged) break;
  }
  EXPECT_EQ(guard.step(), 3);
  // Steps 1..3 each: the stand-in's allreduce, and the guard's unless one rank decides alone.
  EXPECT_EQ(comm->stats().allreduce_calls - calls_before, comm->size() > 1 ? 6 : 3);
  guard.check_evaluation(std::nan(""), 3, 1);  // already recorded: no throw, step kept
  EXPECT_EQ(guard.step(), 3);
}

TEST(DivergenceTest, RecordModeRecordsANonFiniteTestLoss) {
  auto comm = dist::MpiCommunicator::world();
  DivergenceGuard guard("record", *comm, 0.1);
  guard.check_evaluation(1.5, 7, 1);
  EXPECT_EQ(guard.step(), 0);
  guard.check_evaluation(INFINITY, 8, 1);
  EXPECT_EQ(guard.step(), 8);
}

TEST(DivergenceTest, StopModeThrowsOnTheRankThatSeesItNamingTheStep) {
  auto comm = dist::MpiCommunicator::world();
  DivergenceGuard guard("stop", *comm, 0.1);
  EXPECT_NO_THROW(guard.check_loss(2.0, 1, 1));
  EXPECT_FALSE(guard.diverged(1, 1));
  try {
    guard.check_loss(INFINITY, 2, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training diverged at step 2 (epoch 1): loss is inf"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(DivergenceGuard("ignore", *comm, 0.1), Error);
}

}  // namespace
}  // namespace syncbn::train
