#pragma once
// The DataParallel equivalence check shared by the CPU and the CUDA MPI tests (docs/DESIGN.md
// §4): k SGD steps on P ranks of b samples (SyncBN, gradients averaged in buckets) on `device`
// over `comm` equal k steps of one CPU process on the P*b concatenated samples with local BN.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/random.h"
#include "sync_batch_norm_check.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/data_parallel.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/models.h"
#include "syncbn/optim/sgd.h"

namespace syncbn::dist::testing {

using nn::testing::rows;

inline std::shared_ptr<nn::Sequential> small_model(const std::string& name, nn::NormKind norm,
                                                   std::shared_ptr<Communicator> group) {
  auto model = nn::make_model(nn::ModelOptions()
                                  .name(name)
                                  .norm(norm)
                                  .in_channels(1)
                                  .height(8)
                                  .width(8)
                                  .num_classes(5)
                                  .seed(7)
                                  .sync_group(std::move(group)));
  nn::initialize(*model, nn::InitScheme::kKaiming, 7);
  return model;
}

// Every state_dict tensor within rtol, relative to max(|expected|, 1% of the tensor's largest).
inline void expect_same_state(const nn::Module& actual, const nn::Module& expected, double rtol) {
  const auto a = actual.state_dict();
  const auto e = expected.state_dict();
  ASSERT_EQ(a.size(), e.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, e[i].first);
    syncbn::testing::expect_close_rel(a[i].second.to(Device::cpu()), e[i].second, rtol, a[i].first,
                                      1e-2);
  }
}

// `comm` carries both the SyncBN statistics and the gradient buckets when `sync_comm` is null;
// the trainer gives SyncBN a communicator of its own (as with NCCL), which `sync_comm` stands for.
inline void check_steps_match_one_process(const std::string& model_name,
                                          DataParallelOptions options,
                                          std::shared_ptr<Communicator> comm,
                                          Device device = Device::cpu(),
                                          std::shared_ptr<Communicator> sync_comm = nullptr) {
  const int64_t per_rank = 4, steps = 3, classes = 5;
  const int64_t total = per_rank * comm->size();
  auto distributed =
      small_model(model_name, nn::NormKind::kSyncBatch, sync_comm ? sync_comm : comm);
  distributed->to(device);
  auto reference = small_model(model_name, nn::NormKind::kBatch, nullptr);
  DataParallel ddp(distributed, comm, options);
  const auto sgd = optim::SgdOptions().lr(0.1).momentum(0.9).weight_decay(5e-4);
  optim::Sgd opt(distributed->parameters(), sgd);
  optim::Sgd ref_opt(reference->parameters(), sgd);
  nn::CrossEntropyLoss loss, ref_loss;

  for (int64_t step = 0; step < steps; ++step) {
    const Tensor x = syncbn::testing::random_tensor({total, 1, 8, 8}, 1000 + step);
    const auto labels = syncbn::testing::random_labels(total, classes, 2000 + step);

    ref_opt.zero_grad();
    ref_loss.forward(reference->forward(x), labels);
    reference->backward(ref_loss.backward());
    ref_opt.step();

    const int64_t begin = comm->rank() * per_rank;
    opt.zero_grad();
    loss.forward(ddp.forward(rows(x, begin, per_rank).to(device)),
                 std::vector<int32_t>(labels.begin() + begin, labels.begin() + begin + per_rank));
    ddp.backward(loss.backward());
    opt.step();
  }
  expect_same_state(*distributed, *reference, 1e-5);
}

}  // namespace syncbn::dist::testing
