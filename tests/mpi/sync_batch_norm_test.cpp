// SyncBatchNorm under mpirun with P = 1..4 ranks against single-process BatchNorm on the
// concatenated batch (docs/DESIGN.md §3): outputs, running statistics, dx and the summed
// parameter gradients within 1e-5 relative, with uneven local batches (5, 3, 0, 8), in groups of
// two, with mean 1e4, and with one collective per layer and direction.
#include "syncbn/nn/sync_batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "support/random.h"
#include "sync_batch_norm_check.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/sequential.h"

namespace syncbn::nn {
namespace {

using dist::Communicator;
using syncbn::testing::random_tensor;
using testing::check_against_concatenated_batch;
using testing::rows;
using testing::uneven_sizes;

std::shared_ptr<Communicator> world() { return dist::MpiCommunicator::world(); }

TEST(SyncBatchNormTest, EvenBatchesMatchOneProcessOnConcatenatedBatch) {
  auto comm = world();
  check_against_concatenated_batch(*comm, std::vector<int64_t>(comm->size(), 4), 0.1, true, 1);
}

TEST(SyncBatchNormTest, UnevenBatchesWithAnEmptyRankMatchOneProcess) {
  auto comm = world();
  check_against_concatenated_batch(*comm, uneven_sizes(comm->size()), 0.1, true, 2);
}

TEST(SyncBatchNormTest, CumulativeAverageWithoutAffineMatchesOneProcess) {
  auto comm = world();
  check_against_concatenated_batch(*comm, uneven_sizes(comm->size()), std::nullopt, false, 3);
}

TEST(SyncBatchNormTest, GroupsOfTwoConsecutiveRanksMatchTheirGroupsConcatenatedBatch) {
  auto comm = world();
  auto group = comm->split(comm->rank() / 2, comm->rank());
  ASSERT_EQ(group->size(), std::min(2, comm->size() - (comm->rank() / 2) * 2));
  // Each group sees different data (seed by group) and uneven sizes.
  const std::vector<int64_t> sizes =
      group->size() == 2 ? std::vector<int64_t>{6, 1} : std::vector<int64_t>{3};
  check_against_concatenated_batch(*group, sizes, 0.1, true, 10 + comm->rank() / 2);
}

TEST(SyncBatchNormTest, MeanTenThousandKeepsTheVarianceDigits) {
  auto comm = world();
  const int64_t channels = 2, per_rank = 64;
  const int64_t total = per_rank * comm->size();
  // mean 1e4, std 1: plain float sums of x and x^2 would lose every digit of the variance.
  const Tensor x = random_tensor({total, channels}, 77, 1.0f, 1e4f);
  SyncBatchNorm sync(BatchNormOptions(channels).momentum(std::nullopt), comm);
  sync.forward(rows(x, comm->rank() * per_rank, per_rank));

  const auto values = x.to_vector();
  const auto running_var = sync.running_var().to_vector();
  const auto running_mean = sync.running_mean().to_vector();
  for (int64_t c = 0; c < channels; ++c) {
    double mean = 0, m2 = 0;
    for (int64_t i = 0; i < total; ++i) mean += values[i * channels + c];
    mean /= total;
    for (int64_t i = 0; i < total; ++i) m2 += std::pow(values[i * channels + c] - mean, 2);
    // momentum None after one batch: running stats are the batch's (unbiased variance).
    EXPECT_NEAR(running_var[c], m2 / (total - 1), 1e-4 * m2 / (total - 1)) << "channel " << c;
    EXPECT_NEAR(running_mean[c], mean, 1e-6 * mean) << "channel " << c;
  }
}

TEST(SyncBatchNormTest, OneValuePerChannelOverTheGroupIsAnErrorOnEveryRank) {
  auto comm = world();
  SyncBatchNorm sync(BatchNormOptions(4), comm);
  const Tensor x = random_tensor({comm->rank() == 0 ? 1 : 0, 4}, 5);
  try {
    sync.forward(x);
    FAIL() << "expected an error for a group total of one value per channel";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Expected more than 1 value per channel"),
              std::string::npos)
        << e.what();
  }
}

TEST(SyncBatchNormTest, OneAllreducePerDirectionInTrainingAndNoneInEval) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "a world of one makes no collective";
  const int64_t channels = 6;
  SyncBatchNorm sync(BatchNormOptions(channels), comm);
  const Tensor x = random_tensor({3, channels, 2, 2}, 9);
  comm->reset_stats();
  const Tensor y = sync.forward(x);
  EXPECT_EQ(comm->stats().allreduce_calls, 1);
  EXPECT_EQ(comm->stats().allreduce_bytes, (2 * channels + 1) * 8);
  sync.backward(y);
  EXPECT_EQ(comm->stats().allreduce_calls, 2);
  EXPECT_EQ(comm->stats().allreduce_bytes, (2 * channels + 1) * 8 + 2 * channels * 8);
  EXPECT_EQ(comm->stats().allgather_calls, 0);
  sync.eval();
  sync.forward(x);
  EXPECT_EQ(comm->stats().allreduce_calls, 2);
}

TEST(SyncBatchNormTest, ConvertSharesParametersAndBuffersOfTheBatchNorms) {
  auto comm = world();
  auto model = std::make_shared<Sequential>();
  auto bn = model->add(std::make_shared<BatchNorm2d>(BatchNormOptions(3)));
  auto nested = model->add(std::make_shared<Sequential>());
  nested->add(std::make_shared<BatchNorm1d>(BatchNormOptions(5)));
  const auto before = model->state_dict();
  convert_sync_batchnorm(model, comm);
  EXPECT_EQ(model->child("0")->type_name(), "SyncBatchNorm");
  EXPECT_EQ(nested->child("0")->type_name(), "SyncBatchNorm");
  const auto after = model->state_dict();
  ASSERT_EQ(before.size(), after.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].first, after[i].first);
    EXPECT_EQ(before[i].second.data(), after[i].second.data()) << before[i].first;
  }
  EXPECT_EQ(bn->weight(), std::dynamic_pointer_cast<BatchNorm>(model->child("0"))->weight());
}

}  // namespace
}  // namespace syncbn::nn
