// check_consistent / check_same_signature under mpirun with P = 1..4: equal data passes, and a
// difference on one rank throws the same message on every rank without hanging.
#include "syncbn/distributed/consistency.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "support/error.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"

namespace syncbn::dist {
namespace {

using syncbn::testing::error_of;

using Settings = std::vector<std::pair<std::string, std::string>>;

// After a failed check, the ranks must still be in step: a collective completes.
void expect_ranks_in_step(Communicator& comm) {
  int64_t one = 1;
  comm.allreduce_sum(&one, 1, DataType::kInt64);
  EXPECT_EQ(one, comm.size());
}

Settings base_settings() {
  return {{"model", "resnet18"}, {"batch-size", "32"}, {"lr", "0.1"}, {"seed", "42"}};
}

TEST(ConsistencyTest, EqualSettingsPassOnEveryRank) {
  auto comm = MpiCommunicator::world();
  EXPECT_NO_THROW(check_consistent(*comm, base_settings(), "training configuration"));
  EXPECT_NO_THROW(check_consistent(*comm, {}, "training configuration"));
}

TEST(ConsistencyTest, ValueDifferingOnLastRankNamesTheFirstDifferingKeyAndRanks) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  const int odd = comm->size() - 1;
  Settings settings = base_settings();
  if (comm->rank() == odd) {
    settings[1].second = "16";  // batch-size: the first difference
    settings[3].second = "7";   // seed: a later one, not reported
  }
  const std::string message =
      error_of([&] { check_consistent(*comm, settings, "training configuration"); });
  EXPECT_NE(message.find("training configuration differs across ranks: batch-size is 32 on "
                         "rank 0 but 16 on rank " +
                         std::to_string(odd)),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("seed"), std::string::npos) << message;
  expect_ranks_in_step(*comm);
}

TEST(ConsistencyTest, ValueDifferingOnRankZeroListsTheOtherRanksAsARange) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  Settings settings = base_settings();
  if (comm->rank() == 0) settings[2].second = "0.4";
  const std::string message =
      error_of([&] { check_consistent(*comm, settings, "training configuration"); });
  const std::string others =
      comm->size() == 2 ? "rank 1" : "ranks 1-" + std::to_string(comm->size() - 1);
  EXPECT_NE(message.find("lr is 0.4 on rank 0 but 0.1 on " + others), std::string::npos) << message;
  expect_ranks_in_step(*comm);
}

TEST(ConsistencyTest, MissingAndRenamedKeysAreReported) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  Settings missing = base_settings();
  if (comm->rank() == 1) missing.pop_back();
  std::string message = error_of([&] { check_consistent(*comm, missing, "configuration"); });
  EXPECT_NE(message.find("configuration differs across ranks: seed is 42 on rank 0 but not set "
                         "on rank 1"),
            std::string::npos)
      << message;

  Settings renamed = base_settings();
  if (comm->rank() == 1) renamed[2].first = "learning-rate";
  message = error_of([&] { check_consistent(*comm, renamed, "configuration"); });
  EXPECT_NE(message.find("setting 3 is 'lr' on rank 0 but 'learning-rate' on rank 1"),
            std::string::npos)
      << message;
  expect_ranks_in_step(*comm);
}

std::vector<std::string> base_signature() {
  return {"conv1.weight [16, 3, 3, 3]", "bn1.weight [16]", "bn1.bias [16]", "fc.weight [10, 16]",
          "fc.bias [10]"};
}

TEST(ConsistencyTest, EqualSignaturesPass) {
  auto comm = MpiCommunicator::world();
  EXPECT_NO_THROW(check_same_signature(*comm, base_signature(), "model signature"));
}

TEST(ConsistencyTest, SignatureMismatchNamesTheFirstDifferingLineAndItsRank) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<std::string> lines = base_signature();
  if (comm->rank() == 1) {
    lines[3] = "fc.weight [10, 32]";
    lines[4] = "fc.bias [12]";  // later, not reported
  }
  const std::string message =
      error_of([&] { check_same_signature(*comm, lines, "model signature"); });
  EXPECT_NE(message.find("model signature differs across ranks at line 4: 'fc.weight [10, 16]' "
                         "on rank 0 but 'fc.weight [10, 32]' on rank 1"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("fc.bias"), std::string::npos) << message;
  expect_ranks_in_step(*comm);
}

TEST(ConsistencyTest, SignatureWithMissingLinesNamesWhereItEnds) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<std::string> lines = base_signature();
  const int short_rank = comm->size() - 1;
  if (comm->rank() == short_rank) lines.resize(3);
  const std::string message =
      error_of([&] { check_same_signature(*comm, lines, "model signature"); });
  EXPECT_NE(message.find("at line 4: 'fc.weight [10, 16]' on rank 0 but no line (it has 3 "
                         "lines) on rank " +
                         std::to_string(short_rank)),
            std::string::npos)
      << message;
  expect_ranks_in_step(*comm);
}

std::vector<DataSummary> base_data() {
  return {{"training", 60000, 0x1234abcdULL}, {"test", 10000, 0x77ULL}};
}

TEST(ConsistencyTest, SameDataPasses) {
  auto comm = MpiCommunicator::world();
  EXPECT_NO_THROW(check_same_data(*comm, base_data(), "training data"));
}

TEST(ConsistencyTest, DataSizesAreComparedBeforeFingerprints) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<DataSummary> data = base_data();
  if (comm->rank() == 1) {
    data[0].fingerprint = 0x99;  // a later difference in the order of the checks
    data[1].samples = 9000;
  }
  const std::string message = error_of([&] { check_same_data(*comm, data, "training data"); });
  EXPECT_NE(message.find("training data differs across ranks: the test set has 10000 samples on "
                         "rank 0 but 9000 on rank 1"),
            std::string::npos)
      << message;
  expect_ranks_in_step(*comm);
}

TEST(ConsistencyTest, DataOfTheSameSizeWithOtherContentNamesTheFingerprints) {
  auto comm = MpiCommunicator::world();
  if (comm->size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<DataSummary> data = base_data();
  const int odd = comm->size() - 1;
  if (comm->rank() == odd) data[0].fingerprint = 0xfeed;
  const std::string message = error_of([&] { check_same_data(*comm, data, "training data"); });
  EXPECT_NE(message.find("training data differs across ranks: the training set has the same size "
                         "(60000 samples) on every rank but different content: fingerprint "
                         "0x000000001234abcd on rank 0 but 0x000000000000feed on rank " +
                         std::to_string(odd)),
            std::string::npos)
      << message;
  expect_ranks_in_step(*comm);
}

}  // namespace
}  // namespace syncbn::dist
