#include "syncbn/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <string>

#include "support/error.h"
#include "syncbn/error.h"
#include "syncbn/random.h"

namespace syncbn::data {
namespace {

using syncbn::testing::error_of;

// The documented permutation, written out independently: Fisher-Yates from the last position
// down, driven by Generator(derive_seed(seed, epoch)).
std::vector<int64_t> reference_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  Generator generator(derive_seed(seed, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i >= 1; --i) {
    const int64_t j = static_cast<int64_t>(generator.below(static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

TEST(DistributedSamplerTest, RanksTogetherSeeTheOneProcessGlobalBatchInRankOrder) {
  for (int64_t n : {96, 100, 103}) {
    for (int64_t b : {1, 3, 8}) {
      for (bool drop_last : {true, false}) {
        for (int world : {1, 2, 3, 4}) {
          DistributedSampler single(n, world * b, 1, 0, /*seed=*/11, true, drop_last);
          std::vector<DistributedSampler> ranks;
          for (int r = 0; r < world; ++r) ranks.emplace_back(n, b, world, r, 11, true, drop_last);
          for (int64_t epoch : {0, 1, 5}) {
            single.set_epoch(epoch);
            for (auto& s : ranks) s.set_epoch(epoch);
            ASSERT_EQ(single.steps_per_epoch(), ranks[0].steps_per_epoch());
            for (int64_t step = 0; step < single.steps_per_epoch(); ++step) {
              std::vector<int64_t> concatenated;
              for (const auto& s : ranks) {
                const std::vector<int64_t> local = s.indices(step);
                EXPECT_LE(static_cast<int64_t>(local.size()), b);
                concatenated.insert(concatenated.end(), local.begin(), local.end());
              }
              ASSERT_EQ(concatenated, single.indices(step))
                  << "n=" << n << " b=" << b << " P=" << world << " drop_last=" << drop_last
                  << " epoch=" << epoch << " step=" << step;
            }
          }
        }
      }
    }
  }
}

TEST(DistributedSamplerTest, EpochPermutationIsFisherYatesFromSeedAndEpoch) {
  const int64_t n = 50, b = 4;
  const int world = 3;
  for (int64_t epoch : {0, 1, 2, 7}) {
    std::vector<int64_t> concatenated;
    for (int r = 0; r < world; ++r) {
      DistributedSampler sampler(n, b, world, r, /*seed=*/2024, true, /*drop_last=*/false);
      sampler.set_epoch(epoch);
      EXPECT_EQ(sampler.permutation(), reference_permutation(n, 2024, epoch));
    }
    // Step-major, rank-minor order walks the permutation from start to end.
    std::vector<DistributedSampler> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(n, b, world, r, 2024, true, false);
    for (auto& s : ranks) s.set_epoch(epoch);
    for (int64_t step = 0; step < ranks[0].steps_per_epoch(); ++step) {
      for (const auto& s : ranks) {
        const auto local = s.indices(step);
        concatenated.insert(concatenated.end(), local.begin(), local.end());
      }
    }
    EXPECT_EQ(concatenated, reference_permutation(n, 2024, epoch)) << "epoch " << epoch;
  }
}

TEST(DistributedSamplerTest, RanksAreDisjointAndAnEpochVisitsEverySampleOnce) {
  const int64_t n = 103, b = 5;
  for (int world : {1, 2, 3, 4}) {
    for (bool drop_last : {true, false}) {
      std::multiset<int64_t> seen;
      for (int r = 0; r < world; ++r) {
        DistributedSampler sampler(n, b, world, r, 3, true, drop_last);
        for (int64_t step = 0; step < sampler.steps_per_epoch(); ++step) {
          for (int64_t index : sampler.indices(step)) seen.insert(index);
        }
      }
      for (int64_t index : seen) EXPECT_EQ(seen.count(index), 1u) << "index " << index;
      const int64_t global = world * b;
      EXPECT_EQ(static_cast<int64_t>(seen.size()), drop_last ? n / global * global : n);
      for (int64_t index : seen) EXPECT_TRUE(index >= 0 && index < n);
    }
  }
}

TEST(DistributedSamplerTest, EpochChangesThePermutationAndSameSeedRepeatsIt) {
  DistributedSampler a(1000, 10, 2, 0, 42), b(1000, 10, 2, 0, 42), c(1000, 10, 2, 0, 43);
  EXPECT_EQ(a.permutation(), b.permutation());
  EXPECT_NE(a.permutation(), c.permutation());
  const std::vector<int64_t> epoch0 = a.permutation();
  a.set_epoch(1);
  EXPECT_NE(a.permutation(), epoch0);
  a.set_epoch(0);
  EXPECT_EQ(a.permutation(), epoch0);
  EXPECT_EQ(a.epoch(), 0);
}

TEST(DistributedSamplerTest, NoShuffleKeepsTheDatasetOrder) {
  DistributedSampler sampler(10, 2, 2, 1, 42, /*shuffle=*/false, /*drop_last=*/false);
  sampler.set_epoch(3);
  EXPECT_EQ(sampler.indices(0), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(sampler.indices(1), (std::vector<int64_t>{6, 7}));
  EXPECT_EQ(sampler.indices(2), (std::vector<int64_t>{}));
}

TEST(DistributedSamplerTest, DropLastDecidesTheStepCount) {
  // N = 10, B = 2 ranks x 2 = 4: floor(10/4) = 2 full steps, ceil(10/4) = 3 with the partial.
  EXPECT_EQ(DistributedSampler(10, 2, 2, 0, 0, true, true).steps_per_epoch(), 2);
  EXPECT_EQ(DistributedSampler(10, 2, 2, 0, 0, true, false).steps_per_epoch(), 3);
  // Divisible sizes give the same count either way.
  EXPECT_EQ(DistributedSampler(12, 2, 2, 0, 0, true, true).steps_per_epoch(), 3);
  EXPECT_EQ(DistributedSampler(12, 2, 2, 0, 0, true, false).steps_per_epoch(), 3);
  EXPECT_EQ(DistributedSampler(12, 2, 2, 0, 0).global_batch_size(), 4);
  // A dataset smaller than one global batch is fine without drop_last: one partial step.
  EXPECT_EQ(DistributedSampler(3, 2, 4, 3, 0, true, false).steps_per_epoch(), 1);
}

TEST(DistributedSamplerTest, UnevenLastBatchGoesToTheFirstRanksAndMayLeaveSomeEmpty) {
  // N = 11, 4 ranks x 2 = 8: the last step has 3 samples left: rank 0 takes 2, rank 1 takes 1,
  // ranks 2 and 3 take none.
  const std::vector<int64_t> expected_sizes = {2, 1, 0, 0};
  const std::vector<int64_t> permutation = reference_permutation(11, 9, 0);
  for (int r = 0; r < 4; ++r) {
    DistributedSampler sampler(11, 2, 4, r, 9, true, false);
    ASSERT_EQ(sampler.steps_per_epoch(), 2);
    EXPECT_EQ(static_cast<int64_t>(sampler.indices(0).size()), 2);
    const std::vector<int64_t> last = sampler.indices(1);
    ASSERT_EQ(static_cast<int64_t>(last.size()), expected_sizes[r]) << "rank " << r;
    for (std::size_t k = 0; k < last.size(); ++k) {
      EXPECT_EQ(last[k], permutation[8 + 2 * r + k]);
    }
  }
}

TEST(DistributedSamplerTest, IndicesIntoAVectorReuseItsCapacity) {
  DistributedSampler sampler(100, 8, 2, 1, 5);
  std::vector<int64_t> out;
  out.reserve(8);
  const int64_t* data = out.data();
  for (int64_t step = 0; step < sampler.steps_per_epoch(); ++step) {
    sampler.indices(step, out);
    EXPECT_EQ(out, sampler.indices(step));
    EXPECT_EQ(out.data(), data);
  }
}

TEST(DistributedSamplerTest, StartSampleContinuesThePermutationWhateverTheGlobalBatch) {
  // A run of 3 ranks x 4 stopped after 3 steps of epoch 2 had consumed positions [0, 36). The
  // epoch continues from position 36 of the same permutation on any world: here 2 ranks x 5.
  const int64_t n = 100, start = 36;
  const std::vector<int64_t> permutation = reference_permutation(n, /*seed=*/7, /*epoch=*/2);
  for (bool drop_last : {true, false}) {
    std::vector<DistributedSampler> ranks;
    for (int r = 0; r < 2; ++r) ranks.emplace_back(n, 5, 2, r, 7, true, drop_last);
    for (auto& sampler : ranks) sampler.set_epoch(2, start);
    // 64 samples remain: 6 whole global batches of 10, and a seventh of 4 without drop_last.
    EXPECT_EQ(ranks[0].steps_in_epoch(), drop_last ? 6 : 7);
    EXPECT_EQ(ranks[0].steps_per_epoch(), 10);  // a whole epoch is unchanged
    std::vector<int64_t> seen;
    for (int64_t step = 0; step < ranks[0].steps_in_epoch(); ++step) {
      for (const auto& sampler : ranks) {
        for (int64_t index : sampler.indices(step)) seen.push_back(index);
      }
      const int64_t expected_offset =
          step + 1 == ranks[0].steps_in_epoch() ? n : start + 10 * (step + 1);
      EXPECT_EQ(ranks[0].sample_offset_after(step + 1), expected_offset) << "step " << step;
    }
    EXPECT_EQ(ranks[0].sample_offset_after(0), start);
    const int64_t end = drop_last ? start + 60 : n;
    EXPECT_EQ(seen, std::vector<int64_t>(permutation.begin() + start, permutation.begin() + end))
        << "drop_last " << drop_last;
  }

  // The same world resumes exactly where it stopped: step t from position 36 is step t + 3.
  DistributedSampler whole(n, 4, 3, 1, 7), resumed(n, 4, 3, 1, 7);
  whole.set_epoch(2);
  resumed.set_epoch(2, start);
  for (int64_t step = 0; step < resumed.steps_in_epoch(); ++step) {
    EXPECT_EQ(resumed.indices(step), whole.indices(step + 3)) << "step " << step;
  }
  // The epoch's start applies to the next set_epoch call only, even for the same epoch.
  resumed.set_epoch(2);
  EXPECT_EQ(resumed.indices(0), whole.indices(0));
  resumed.set_epoch(3, n);
  EXPECT_EQ(resumed.steps_in_epoch(), 0);
  EXPECT_NE(error_of([&] { resumed.set_epoch(3, n + 1); }).find("start sample 101 is outside"),
            std::string::npos);
  EXPECT_THROW(resumed.set_epoch(3, -1), Error);
}

TEST(DistributedSamplerTest, InvalidArgumentsAreClearErrors) {
  EXPECT_NE(error_of([] { DistributedSampler(10, 0, 1, 0, 0); }).find("batch size per rank"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(10, 2, 2, 2, 0); }).find("rank 2 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(10, 2, 2, -1, 0); }).find("rank -1"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(10, 2, 0, 0, 0); }).find("world size"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributedSampler(0, 2, 1, 0, 0, true, false); }).find("empty"),
            std::string::npos);
  const std::string small = error_of([] { DistributedSampler(100, 32, 4, 0, 0, true, true); });
  EXPECT_NE(small.find("100 samples are fewer than one global batch of 128 (4 ranks x 32"),
            std::string::npos)
      << small;
  DistributedSampler sampler(10, 2, 2, 0, 0);
  EXPECT_NE(error_of([&] { sampler.indices(2); }).find("step 2 is out of range"),
            std::string::npos);
  EXPECT_THROW(sampler.indices(-1), Error);
  EXPECT_THROW(sampler.set_epoch(-1), Error);
}

TEST(ShardRangeTest, ContiguousDisjointCoveringAndBalanced) {
  for (int64_t n = 0; n <= 23; ++n) {
    for (int world = 1; world <= 5; ++world) {
      int64_t expected_begin = 0, smallest = n, largest = 0;
      for (int r = 0; r < world; ++r) {
        const auto [begin, end] = shard_range(n, world, r);
        EXPECT_EQ(begin, expected_begin) << "n=" << n << " P=" << world << " rank " << r;
        EXPECT_LE(begin, end);
        smallest = std::min(smallest, end - begin);
        largest = std::max(largest, end - begin);
        expected_begin = end;
      }
      EXPECT_EQ(expected_begin, n) << "n=" << n << " P=" << world;
      EXPECT_LE(largest - smallest, 1) << "n=" << n << " P=" << world;
    }
  }
  EXPECT_EQ(shard_range(10, 4, 0), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(shard_range(10, 4, 3), (std::pair<int64_t, int64_t>{8, 10}));
}

TEST(ShardRangeTest, InvalidArgumentsAreErrors) {
  EXPECT_THROW(shard_range(10, 0, 0), Error);
  EXPECT_THROW(shard_range(10, 2, 2), Error);
  EXPECT_THROW(shard_range(10, 2, -1), Error);
  EXPECT_THROW(shard_range(-1, 2, 0), Error);
}

}  // namespace
}  // namespace syncbn::data
