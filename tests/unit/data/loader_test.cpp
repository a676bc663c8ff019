#include "syncbn/data/loader.h"

#include <gtest/gtest.h>

#include "syncbn/data/synthetic.h"
#include "syncbn/error.h"

namespace syncbn::data {
namespace {

Dataset small_dataset(int64_t samples, int64_t height = 3, int64_t width = 2) {
  SyntheticOptions options;
  options.samples(samples);
  options.channels(2);
  options.height(height);
  options.width(width);
  options.classes(5);
  options.seed(3);
  return make_synthetic(options, true);
}

// Checks batch sample i against dataset sample indices[i] by direct indexing.
void expect_batch_holds(const Dataset& dataset, const Batch& batch,
                        const std::vector<int64_t>& indices) {
  const int64_t d = dataset.sample_numel();
  ASSERT_EQ(batch.size(), static_cast<int64_t>(indices.size()));
  ASSERT_EQ(batch.indices, indices);
  Shape shape = dataset.sample_shape();
  shape.insert(shape.begin(), batch.size());
  ASSERT_EQ(batch.images.shape(), shape);
  const float* source = dataset.images.data();
  const float* images = batch.images.data();
  for (std::size_t i = 0; i < indices.size(); ++i) {
    EXPECT_EQ(batch.labels[i], dataset.labels[indices[i]]) << "sample " << i;
    for (int64_t k = 0; k < d; ++k) {
      ASSERT_EQ(images[i * d + k], source[indices[i] * d + k]) << "sample " << i << " value " << k;
    }
  }
}

TEST(LoaderTest, BatchHoldsTheSamplersSamplesForThisRank) {
  const Dataset dataset = small_dataset(50);
  DistributedSampler sampler(50, 4, 3, 1, 8, true, false);
  Loader loader(dataset, sampler);
  for (int64_t epoch : {0, 1}) {
    loader.set_epoch(epoch);
    sampler.set_epoch(epoch);
    ASSERT_EQ(loader.steps_per_epoch(), 5);
    for (int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
      expect_batch_holds(dataset, loader.batch(step), sampler.indices(step));
    }
  }
}

TEST(LoaderTest, BufferIsAllocatedOnceAndReusedForShortBatches) {
  const Dataset dataset = small_dataset(11);
  // 11 samples, 2 ranks x 4: step 0 full, step 1 leaves 3 samples: rank 0 gets all 3.
  Loader loader(dataset, DistributedSampler(11, 4, 2, 0, 1, true, false));
  const float* buffer = loader.batch(0).images.data();
  EXPECT_EQ(loader.batch(0).size(), 4);
  const Batch& last = loader.batch(1);
  EXPECT_EQ(last.size(), 3);
  EXPECT_EQ(last.images.shape(), (Shape{3, 2, 3, 2}));
  EXPECT_EQ(last.images.data(), buffer);
  EXPECT_EQ(loader.batch(0).images.data(), buffer);
}

TEST(LoaderTest, RankWithNothingLeftGetsAnEmptyBatch) {
  const Dataset dataset = small_dataset(11);
  Loader loader(dataset, DistributedSampler(11, 4, 2, 1, 1, true, false));
  EXPECT_EQ(loader.batch(0).size(), 4);
  const Batch& empty = loader.batch(1);
  EXPECT_EQ(empty.size(), 0);
  EXPECT_EQ(empty.images.shape(), (Shape{0, 2, 3, 2}));
  EXPECT_TRUE(empty.indices.empty());
}

TEST(LoaderTest, LargeBatchesGatheredInParallelHoldTheRightSamples) {
  // 256 samples of 2x28x28 floats: far above the parallel threshold.
  const Dataset dataset = small_dataset(1000, 28, 28);
  DistributedSampler sampler(1000, 256, 2, 1, 4);
  Loader loader(dataset, sampler);
  for (int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
    expect_batch_holds(dataset, loader.batch(step), sampler.indices(step));
  }
}

TEST(LoaderTest, SamplerForAnotherDatasetSizeIsAnError) {
  const Dataset dataset = small_dataset(20);
  EXPECT_THROW(Loader(dataset, DistributedSampler(21, 2, 1, 0, 0)), Error);
}

TEST(LoaderTest, GatherRejectsOutOfRangeIndices) {
  const Dataset dataset = small_dataset(5);
  std::vector<float> images(12);
  std::vector<int32_t> labels(1);
  EXPECT_THROW(gather_samples(dataset, {5}, images.data(), labels.data()), Error);
  EXPECT_THROW(gather_samples(dataset, {-1}, images.data(), labels.data()), Error);
}

TEST(ForEachChunkTest, CoversTheRangeInOrderInFixedChunks) {
  const Dataset dataset = small_dataset(40);
  std::vector<int64_t> sizes;
  int64_t next = 3;
  for_each_chunk(dataset, 3, 30, 8, [&](const Batch& batch) {
    sizes.push_back(batch.size());
    std::vector<int64_t> expected(static_cast<std::size_t>(batch.size()));
    for (auto& index : expected) index = next++;
    expect_batch_holds(dataset, batch, expected);
  });
  EXPECT_EQ(sizes, (std::vector<int64_t>{8, 8, 8, 3}));
  EXPECT_EQ(next, 30);
}

TEST(ForEachChunkTest, EmptyRangeCallsNothingAndBadRangesAreErrors) {
  const Dataset dataset = small_dataset(10);
  int calls = 0;
  for_each_chunk(dataset, 4, 4, 3, [&](const Batch&) { ++calls; });
  EXPECT_EQ(calls, 0);
  auto ignore = [](const Batch&) {};
  EXPECT_THROW(for_each_chunk(dataset, 0, 11, 3, ignore), Error);
  EXPECT_THROW(for_each_chunk(dataset, 5, 4, 3, ignore), Error);
  EXPECT_THROW(for_each_chunk(dataset, -1, 4, 3, ignore), Error);
  EXPECT_THROW(for_each_chunk(dataset, 0, 4, 0, ignore), Error);
}

}  // namespace
}  // namespace syncbn::data
