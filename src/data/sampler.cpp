#include "syncbn/data/sampler.h"

#include <algorithm>
#include <numeric>

#include "syncbn/error.h"
#include "syncbn/random.h"

namespace syncbn::data {

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t batch_per_rank, int world_size,
                                       int rank, uint64_t seed, bool shuffle, bool drop_last)
    : dataset_size_(dataset_size),
      batch_per_rank_(batch_per_rank),
      world_size_(world_size),
      rank_(rank),
      seed_(seed),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  SYNCBN_CHECK(dataset_size > 0, "DistributedSampler: the dataset is empty (", dataset_size,
               " samples)");
  SYNCBN_CHECK(batch_per_rank > 0, "DistributedSampler: batch size per rank must be positive, got ",
               batch_per_rank);
  SYNCBN_CHECK(world_size > 0, "DistributedSampler: world size must be positive, got ", world_size);
  SYNCBN_CHECK(rank >= 0 && rank < world_size, "DistributedSampler: rank ", rank,
               " is out of range for a world of ", world_size, " ranks");
  SYNCBN_CHECK(!drop_last || dataset_size >= global_batch_size(),
               "DistributedSampler: ", dataset_size, " samples are fewer than one global batch of ",
               global_batch_size(), " (", world_size, " ranks x ", batch_per_rank,
               " per rank) with drop_last: every step would be dropped; use a smaller batch or "
               "fewer ranks");
  set_epoch(0);
}

void DistributedSampler::set_epoch(int64_t epoch, int64_t start_sample) {
  SYNCBN_CHECK(epoch >= 0, "DistributedSampler: epoch must be non-negative, got ", epoch);
  SYNCBN_CHECK(start_sample >= 0 && start_sample <= dataset_size_,
               "DistributedSampler: start sample ", start_sample, " is outside the epoch of ",
               dataset_size_, " samples");
  start_sample_ = start_sample;
  if (epoch == epoch_) return;
  epoch_ = epoch;
  permutation_.resize(static_cast<std::size_t>(dataset_size_));
  std::iota(permutation_.begin(), permutation_.end(), int64_t{0});
  if (!shuffle_) return;
  // Fisher-Yates: position i takes a uniform pick among the positions not yet fixed.
  Generator generator(derive_seed(seed_, static_cast<uint64_t>(epoch)));
  for (int64_t i = dataset_size_ - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(generator.below(static_cast<uint64_t>(i + 1)));
    std::swap(permutation_[static_cast<std::size_t>(i)], permutation_[static_cast<std::size_t>(j)]);
  }
}

int64_t DistributedSampler::steps_per_epoch() const {
  const int64_t global = global_batch_size();
  return drop_last_ ? dataset_size_ / global : (dataset_size_ + global - 1) / global;
}

int64_t DistributedSampler::steps_in_epoch() const {
  const int64_t global = global_batch_size();
  const int64_t remaining = dataset_size_ - start_sample_;
  return drop_last_ ? remaining / global : (remaining + global - 1) / global;
}

int64_t DistributedSampler::sample_offset_after(int64_t steps_done) const {
  SYNCBN_CHECK(steps_done >= 0 && steps_done <= steps_in_epoch(),
               "DistributedSampler: ", steps_done, " steps done is out of range; this epoch has ",
               steps_in_epoch(), " steps");
  return steps_done == steps_in_epoch() ? dataset_size_
                                        : start_sample_ + steps_done * global_batch_size();
}

void DistributedSampler::indices(int64_t step, std::vector<int64_t>& out) const {
  SYNCBN_CHECK(step >= 0 && step < steps_in_epoch(), "DistributedSampler: step ", step,
               " is out of range; this epoch has ", steps_in_epoch(), " steps");
  // Positions [begin, end) of the permutation, clipped to the dataset in the last partial step.
  const int64_t begin =
      std::min(start_sample_ + step * global_batch_size() + rank_ * batch_per_rank_, dataset_size_);
  const int64_t end = std::min(begin + batch_per_rank_, dataset_size_);
  out.assign(permutation_.begin() + begin, permutation_.begin() + end);
}

std::vector<int64_t> DistributedSampler::indices(int64_t step) const {
  std::vector<int64_t> out;
  indices(step, out);
  return out;
}

std::pair<int64_t, int64_t> shard_range(int64_t n, int world_size, int rank) {
  SYNCBN_CHECK(n >= 0, "shard_range: negative size ", n);
  SYNCBN_CHECK(world_size > 0, "shard_range: world size must be positive, got ", world_size);
  SYNCBN_CHECK(rank >= 0 && rank < world_size, "shard_range: rank ", rank,
               " is out of range for a world of ", world_size, " ranks");
  // The first n % world_size ranks hold one sample more.
  const int64_t base = n / world_size;
  const int64_t extra = n % world_size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace syncbn::data
