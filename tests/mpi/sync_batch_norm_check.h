#pragma once
// The SyncBatchNorm equivalence check shared by the CPU and the CUDA MPI tests: a SyncBatchNorm
// on `device` over `group`, each rank holding its slice of a batch, against single-process
// BatchNorm2d (CPU) on the group's concatenated batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/random.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/sync_batch_norm.h"

namespace syncbn::nn::testing {

using dist::Communicator;
using syncbn::testing::expect_close_rel;
using syncbn::testing::random_tensor;

// Rows [begin, begin + count) of a (N, ...) tensor, as a copy.
inline Tensor rows(const Tensor& t, int64_t begin, int64_t count) {
  Shape shape = t.shape();
  const int64_t row = t.numel() / std::max<int64_t>(1, shape[0]);
  shape[0] = count;
  return t.view(shape, begin * row).clone();
}

inline Tensor summed(Communicator& comm, const Tensor& t) {
  Tensor copy = t.clone();
  comm.allreduce_sum(copy);
  return copy;
}

// One layer under test: `group` synchronises ranks whose local batches are `sizes[rank]`
// (indexed by rank within the group); the reference runs the group's concatenated batch.
inline void check_against_concatenated_batch(Communicator& group, const std::vector<int64_t>& sizes,
                                             std::optional<double> momentum, bool affine,
                                             uint64_t seed, Device device = Device::cpu()) {
  const int64_t channels = 3, height = 4, width = 5;
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  const int64_t begin = std::accumulate(sizes.begin(), sizes.begin() + group.rank(), int64_t{0});
  const int64_t mine = sizes[group.rank()];

  const auto options = BatchNormOptions(channels).momentum(momentum).affine(affine);
  BatchNorm2d reference(options);
  // Built from a BatchNorm, as convert_sync_batchnorm does.
  auto sync = convert_sync_batchnorm(std::make_shared<BatchNorm2d>(options),
                                     std::shared_ptr<Communicator>(&group, [](Communicator*) {}));
  ASSERT_EQ(sync->type_name(), "SyncBatchNorm");
  sync->to(device);

  // Compared on the host, within 1e-5 relative; elements below 1% of their tensor's largest
  // (cancelled sums) within 1e-5 of that 1%.
  constexpr double kFloor = 1e-2;
  for (int iteration = 0; iteration < 3; ++iteration) {
    const Tensor x = random_tensor({total, channels, height, width}, seed + iteration, 3.0f, 2.0f);
    const Tensor dy = random_tensor({total, channels, height, width}, seed + 100 + iteration);
    reference.zero_grad();
    sync->zero_grad();
    const Tensor y_ref = reference.forward(x);
    const Tensor dx_ref = reference.backward(dy);
    const Tensor y = sync->forward(rows(x, begin, mine).to(device));
    const Tensor dx = sync->backward(rows(dy, begin, mine).to(device));

    const std::string it = " (iteration " + std::to_string(iteration) + ")";
    expect_close_rel(y, rows(y_ref, begin, mine), 1e-5, "y" + it, kFloor);
    expect_close_rel(dx, rows(dx_ref, begin, mine), 1e-5, "dx" + it, kFloor);
    const auto state = sync->state_dict();
    const auto ref_state = reference.state_dict();
    ASSERT_EQ(state.size(), ref_state.size());
    for (std::size_t i = 0; i < state.size(); ++i) {
      ASSERT_EQ(state[i].first, ref_state[i].first);
      expect_close_rel(state[i].second, ref_state[i].second, 1e-5, state[i].first + it, kFloor);
    }
    // weight.grad and bias.grad are local sums: over the group they equal the reference's.
    const auto params = sync->named_parameters();
    const auto ref_params = reference.named_parameters();
    ASSERT_EQ(params.size(), affine ? 2u : 0u);
    for (std::size_t i = 0; i < params.size(); ++i) {
      expect_close_rel(summed(group, params[i].second->grad), ref_params[i].second->grad, 1e-5,
                       params[i].first + ".grad" + it, kFloor);
    }
  }
}

inline std::vector<int64_t> uneven_sizes(int size) {
  const std::vector<int64_t> pattern = {5, 3, 0, 8};
  std::vector<int64_t> sizes;
  for (int r = 0; r < size; ++r) sizes.push_back(pattern[r % pattern.size()]);
  return sizes;
}

}  // namespace syncbn::nn::testing
