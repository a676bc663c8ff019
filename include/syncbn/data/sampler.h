#pragma once
// Which samples each rank reads at each step, such that the GLOBAL batch of a step is the same
// set of samples whatever the number of ranks: P ranks of b samples see exactly what one
// process with batch P*b sees, which is what makes P-rank training comparable to 1-rank.
#include <cstdint>
#include <utility>
#include <vector>

namespace syncbn::data {

class DistributedSampler {
 public:
  // Epoch e visits a permutation of [0, dataset_size): Fisher-Yates driven by
  // Generator(derive_seed(seed, e)) (the identity when shuffle is false). With global batch
  // B = world_size * batch_per_rank, step t covers positions [t*B, (t+1)*B) of the permutation
  // and rank r takes the r-th slice of batch_per_rank positions.
  // drop_last: steps_per_epoch = floor(N / B); otherwise ceil(N / B), and in the last, partial
  // global batch the ranks take consecutive slices of what remains, so late ranks may get
  // fewer samples, or none.
  DistributedSampler(int64_t dataset_size, int64_t batch_per_rank, int world_size, int rank,
                     uint64_t seed, bool shuffle = true, bool drop_last = true);

  // Recomputes the permutation for `epoch` (O(dataset_size)); call once per epoch. The epoch's
  // steps start at position `start_sample` of the permutation (0 <= start_sample <= N): a run
  // resumed mid-epoch continues from the samples it had reached, whatever its global batch
  // (docs/DESIGN.md §6). Step t then covers positions [start + t*B, start + (t+1)*B).
  void set_epoch(int64_t epoch, int64_t start_sample = 0);
  int64_t epoch() const { return epoch_; }
  int64_t start_sample() const { return start_sample_; }

  // Steps of a whole epoch (from position 0).
  int64_t steps_per_epoch() const;
  // Steps of the current epoch from start_sample(): floor((N - start) / B) with drop_last,
  // else ceil((N - start) / B). Equal to steps_per_epoch() when start_sample() is 0.
  int64_t steps_in_epoch() const;
  // The permutation position reached once `steps_done` steps of the current epoch have run
  // (0 <= steps_done <= steps_in_epoch()): start + steps_done * B, and N after the last step
  // (samples that a drop_last epoch leaves over are skipped).
  int64_t sample_offset_after(int64_t steps_done) const;
  // This rank's sample indices at `step` of the current epoch (0 <= step < steps_in_epoch()).
  std::vector<int64_t> indices(int64_t step) const;
  // Same, into `out` (reuses its capacity: no allocation per step).
  void indices(int64_t step, std::vector<int64_t>& out) const;

  int64_t global_batch_size() const { return world_size_ * batch_per_rank_; }
  int64_t batch_per_rank() const { return batch_per_rank_; }
  int64_t dataset_size() const { return dataset_size_; }
  int world_size() const { return world_size_; }
  int rank() const { return rank_; }
  bool drop_last() const { return drop_last_; }
  // The whole permutation of the current epoch, for inspection.
  const std::vector<int64_t>& permutation() const { return permutation_; }

 private:
  int64_t dataset_size_;
  int64_t batch_per_rank_;
  int world_size_;
  int rank_;
  uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  int64_t epoch_ = -1;
  int64_t start_sample_ = 0;
  std::vector<int64_t> permutation_;
};

// Rank's part [begin, end) of [0, n) for evaluation: contiguous, disjoint, covering [0, n) in
// rank order; sizes differ by at most one (the first n % world_size ranks get one more).
std::pair<int64_t, int64_t> shard_range(int64_t n, int world_size, int rank);

}  // namespace syncbn::data
