// DataParallel under mpirun with P = 1..4 ranks: k SGD steps on P ranks of b samples (SyncBN,
// gradients averaged in buckets) equal k steps of one process on the P*b concatenated samples
// (local BN) - docs/DESIGN.md §4 - plus gradient accumulation and the model-signature check.
#include "syncbn/distributed/data_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "data_parallel_check.h"
#include "support/close.h"
#include "support/random.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/models.h"
#include "syncbn/nn/sequential.h"
#include "syncbn/optim/sgd.h"

namespace syncbn::dist {
namespace {

using syncbn::testing::expect_close;
using syncbn::testing::random_labels;
using syncbn::testing::random_tensor;
using testing::check_steps_match_one_process;
using testing::rows;
using testing::small_model;

std::shared_ptr<Communicator> world() { return MpiCommunicator::world(); }

TEST(DataParallelTest, MlpStepsOnPRanksEqualOneProcessOnConcatenatedBatches) {
  check_steps_match_one_process("mlp", {}, world());
}

TEST(DataParallelTest, CnnStepsWithSmallBucketsEqualOneProcessOnConcatenatedBatches) {
  DataParallelOptions options;
  options.first_bucket_bytes(1024);
  options.bucket_bytes(8 * 1024);
  check_steps_match_one_process("cnn", options, world());
}

TEST(DataParallelTest, BucketsFollowReverseRegistrationOrderAndSizes) {
  auto comm = world();
  auto model = small_model("mlp", nn::NormKind::kNone, comm);
  DataParallelOptions options;
  options.first_bucket_bytes(4096);
  options.bucket_bytes(300 * 1024);
  DataParallel ddp(model, comm, options);
  const auto sizes = ddp.bucket_sizes();
  // mlp 64-256-256-5: the last Linear (5x256 + 5 floats) fills the first bucket past 4 KiB.
  ASSERT_GE(sizes.size(), 2u);
  std::size_t total = 0;
  for (auto s : sizes) total += s;
  std::size_t expected = 0;
  for (auto& p : model->parameters()) expected += p->value.numel() * sizeof(float);
  EXPECT_EQ(total, expected);
  // Gradients are views into the buckets, laid out in reverse registration order: the last
  // Linear's bias (registered last) comes first, its weight right after it.
  auto params = model->parameters();
  const auto& bias = params[params.size() - 1];
  const auto& weight = params[params.size() - 2];
  EXPECT_EQ(bias->grad.data() + bias->value.numel(), weight->grad.data());
  EXPECT_EQ(sizes[0], (bias->value.numel() + weight->value.numel()) * sizeof(float));
}

TEST(DataParallelTest, NoSyncAccumulatesAndTheNextBackwardAveragesTheSum) {
  auto comm = world();
  const int64_t per_rank = 3, classes = 5;
  const int64_t total = per_rank * comm->size();
  auto distributed = small_model("mlp", nn::NormKind::kNone, comm);
  auto reference = small_model("mlp", nn::NormKind::kNone, nullptr);
  DataParallel ddp(distributed, comm);
  nn::CrossEntropyLoss loss;
  distributed->zero_grad();
  reference->zero_grad();
  for (int micro = 0; micro < 2; ++micro) {
    const Tensor x = random_tensor({total, 1, 8, 8}, 300 + micro);
    const auto labels = random_labels(total, classes, 400 + micro);
    // Reference: every rank's micro-batch, gradients summed, then divided by P at the end.
    for (int r = 0; r < comm->size(); ++r) {
      loss.forward(
          reference->forward(rows(x, r * per_rank, per_rank)),
          std::vector<int32_t>(labels.begin() + r * per_rank, labels.begin() + (r + 1) * per_rank));
      reference->backward(loss.backward());
    }
    const int64_t begin = comm->rank() * per_rank;
    loss.forward(ddp.forward(rows(x, begin, per_rank)),
                 std::vector<int32_t>(labels.begin() + begin, labels.begin() + begin + per_rank));
    if (micro == 0) {
      NoSync guard(ddp);
      comm->reset_stats();
      ddp.backward(loss.backward());
      EXPECT_EQ(comm->stats().allreduce_calls, 0) << "no_sync must not communicate";
    } else {
      ddp.backward(loss.backward());
    }
  }
  const auto params = distributed->named_parameters();
  const auto ref_params = reference->named_parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    // The reference's gradient is the sum over the P ranks' samples; DataParallel averages.
    std::vector<float> averaged = ref_params[i].second->grad.to_vector();
    for (float& v : averaged) v /= comm->size();
    expect_close(params[i].second->grad.to_vector(), averaged, 1e-5, 1e-7, params[i].first);
  }
}

TEST(DataParallelTest, ParametersAreBroadcastFromRankZero) {
  auto comm = world();
  auto model = small_model("mlp", nn::NormKind::kBatch, comm);
  // Every rank perturbs its replica differently; DataParallel makes them rank 0's.
  for (auto& p : model->parameters()) {
    p->value.data()[0] = static_cast<float>(comm->rank());
  }
  DataParallel ddp(model, comm);
  for (auto& p : model->parameters()) EXPECT_EQ(p->value.data()[0], 0.0f);
}

TEST(DataParallelTest, DifferentModelsOnTheRanksFailNamingTheFirstDifference) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs two ranks";
  auto model = small_model(comm->rank() == 1 ? "cnn" : "mlp", nn::NormKind::kBatch, nullptr);
  try {
    DataParallel ddp(model, comm);
    FAIL() << "expected a model signature mismatch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
}

// A parameter used twice in one forward (here one Linear applied twice) reports its gradient
// ready twice per backward: its bucket would be reduced while backward still adds to it, so
// DataParallel refuses, naming the parameter, as torch DDP does.
TEST(DataParallelTest, AParameterReadyTwiceInOneBackwardIsAnErrorNamingIt) {
  auto comm = world();
  auto model = std::make_shared<nn::Sequential>();
  auto shared = std::make_shared<nn::Linear>(4, 4, /*bias=*/true, /*seed=*/3);
  model->add(shared);
  model->add(shared);
  DataParallel ddp(model, comm);
  const Tensor y = ddp.forward(random_tensor({2, 4}, 5));
  try {
    ddp.backward(Tensor::full(y.shape(), 1.0f));
    FAIL() << "expected an error for the shared parameter";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("reported its gradient ready twice in one backward"), std::string::npos)
        << message;
    EXPECT_NE(message.find("'0.weight (also 1.weight)'"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace syncbn::dist
