// DataParallel under mpirun with P = 1..4 ranks: k SGD steps on P ranks of b samples (SyncBN,
// gradients averaged in buckets) equal k steps of one process on the P*b concatenated samples
// (local BN) - docs/DESIGN.md §4 - plus gradient accumulation and the model-signature check.
#include "syncbn/distributed/data_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "support/close.h"
#include "support/random.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/models.h"
#include "syncbn/optim/sgd.h"

namespace syncbn::dist {
namespace {

using testing::expect_close;
using testing::expect_close_rel;
using testing::random_labels;
using testing::random_tensor;

std::shared_ptr<Communicator> world() { return MpiCommunicator::world(); }

Tensor rows(const Tensor& t, int64_t begin, int64_t count) {
  Shape shape = t.shape();
  const int64_t row = t.numel() / std::max<int64_t>(1, shape[0]);
  shape[0] = count;
  return t.view(shape, begin * row).clone();
}

std::shared_ptr<nn::Sequential> small_model(const std::string& name, nn::NormKind norm,
                                            std::shared_ptr<Communicator> group) {
  nn::ModelOptions o;
  o.name(name);
  o.norm(norm);
  o.in_channels(1);
  o.height(8).width(8);
  o.num_classes(5);
  o.seed(7);
  o.sync_group(std::move(group));
  auto model = nn::make_model(o);
  nn::initialize(*model, nn::InitScheme::kKaiming, 7);
  return model;
}

void expect_same_state(const nn::Module& actual, const nn::Module& expected, double rtol) {
  const auto a = actual.state_dict();
  const auto e = expected.state_dict();
  ASSERT_EQ(a.size(), e.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, e[i].first);
    expect_close_rel(a[i].second, e[i].second, rtol, a[i].first, 1e-2);
  }
}

// k steps: P ranks with SyncBN + DataParallel vs one process with BN on the concatenated batch.
void check_steps_match_one_process(const std::string& model_name, DataParallelOptions options) {
  auto comm = world();
  const int64_t per_rank = 4, steps = 3, classes = 5;
  const int64_t total = per_rank * comm->size();
  auto distributed = small_model(model_name, nn::NormKind::kSyncBatch, comm);
  auto reference = small_model(model_name, nn::NormKind::kBatch, nullptr);
  DataParallel ddp(distributed, comm, options);
  optim::SgdOptions sgd;
  sgd.lr(0.1);
  sgd.momentum(0.9);
  sgd.weight_decay(5e-4);
  optim::Sgd opt(distributed->parameters(), sgd);
  optim::Sgd ref_opt(reference->parameters(), sgd);
  nn::CrossEntropyLoss loss, ref_loss;

  for (int64_t step = 0; step < steps; ++step) {
    const Tensor x = random_tensor({total, 1, 8, 8}, 1000 + step);
    const auto labels = random_labels(total, classes, 2000 + step);

    ref_opt.zero_grad();
    ref_loss.forward(reference->forward(x), labels);
    reference->backward(ref_loss.backward());
    ref_opt.step();

    const int64_t begin = comm->rank() * per_rank;
    opt.zero_grad();
    loss.forward(ddp.forward(rows(x, begin, per_rank)),
                 std::vector<int32_t>(labels.begin() + begin, labels.begin() + begin + per_rank));
    ddp.backward(loss.backward());
    opt.step();
  }
  expect_same_state(*distributed, *reference, 1e-5);
}

TEST(DataParallelTest, MlpStepsOnPRanksEqualOneProcessOnConcatenatedBatches) {
  check_steps_match_one_process("mlp", {});
}

TEST(DataParallelTest, CnnStepsWithSmallBucketsEqualOneProcessOnConcatenatedBatches) {
  DataParallelOptions options;
  options.first_bucket_bytes(1024);
  options.bucket_bytes(8 * 1024);
  check_steps_match_one_process("cnn", options);
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

}  // namespace
}  // namespace syncbn::dist
