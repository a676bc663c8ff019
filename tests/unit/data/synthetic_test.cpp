#include "syncbn/data/synthetic.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "syncbn/error.h"

namespace syncbn::data {
namespace {

SyntheticOptions small_options() {
  SyntheticOptions options;
  options.samples(500);
  options.channels(2);
  options.height(5);
  options.width(4);
  options.classes(4);
  options.seed(17);
  return options;
}

TEST(SyntheticTest, ShapeLabelsAndNameFollowTheOptions) {
  const Dataset dataset = make_synthetic(small_options(), true);
  EXPECT_EQ(dataset.images.shape(), (Shape{500, 2, 5, 4}));
  EXPECT_EQ(dataset.size(), 500);
  EXPECT_EQ(dataset.num_classes, 4);
  EXPECT_EQ(dataset.name, "synthetic-train");
  EXPECT_EQ(make_synthetic(small_options(), false).name, "synthetic-test");
  EXPECT_NO_THROW(check_dataset(dataset));
  // Uniform labels: each of 4 classes near 125 of 500 (binomial sd ~9.7).
  for (int64_t count : class_counts(dataset)) EXPECT_NEAR(count, 125, 50);
}

TEST(SyntheticTest, SameSeedAndSplitGiveIdenticalData) {
  const Dataset a = make_synthetic(small_options(), true);
  const Dataset b = make_synthetic(small_options(), true);
  EXPECT_EQ(a.images.to_vector(), b.images.to_vector());
  EXPECT_EQ(a.labels, b.labels);
}

TEST(SyntheticTest, SplitsAndSeedsGiveDifferentSamples) {
  const Dataset train = make_synthetic(small_options(), true);
  const Dataset test = make_synthetic(small_options(), false);
  SyntheticOptions other_seed = small_options();
  other_seed.seed(18);
  const Dataset other = make_synthetic(other_seed, true);
  EXPECT_NE(train.images.to_vector(), test.images.to_vector());
  EXPECT_NE(train.images.to_vector(), other.images.to_vector());
}

TEST(SyntheticTest, ResultDoesNotDependOnTheThreadCount) {
  SyntheticOptions options = small_options();
  options.samples(4000);  // large enough for the parallel path
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Dataset one = make_synthetic(options, true);
  omp_set_num_threads(3);
  const Dataset three = make_synthetic(options, true);
  omp_set_num_threads(threads);
  EXPECT_EQ(one.images.to_vector(), three.images.to_vector());
  EXPECT_EQ(one.labels, three.labels);
}

TEST(SyntheticTest, PixelsHaveZeroMeanAndUnitVariance) {
  SyntheticOptions options = small_options();
  options.classes(10);
  options.height(28).width(28);
  options.channels(1);
  options.samples(2000);
  const std::vector<float> x = make_synthetic(options, true).images.to_vector();
  double sum = 0, sum_squares = 0;
  for (float v : x) {
    sum += v;
    sum_squares += double{v} * v;
  }
  const double mean = sum / x.size();
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(std::sqrt(sum_squares / x.size() - mean * mean), 1.0, 0.05);
}

// Learnability: the nearest class mean of the training split, computed here in double,
// classifies the test split far above chance (1 / classes), with noise as large as the signal.
TEST(SyntheticTest, NearestTrainClassMeanClassifiesTestSamplesWellAboveChance) {
  SyntheticOptions options = small_options();
  options.samples(1000);
  options.classes(10);
  const Dataset train = make_synthetic(options, true);
  options.samples(300);
  const Dataset test = make_synthetic(options, false);
  const int64_t d = train.sample_numel();
  std::vector<double> means(static_cast<std::size_t>(10 * d), 0.0);
  const std::vector<int64_t> counts = class_counts(train);
  const float* x = train.images.data();
  for (int64_t i = 0; i < train.size(); ++i) {
    const int32_t c = train.labels[i];
    for (int64_t k = 0; k < d; ++k) means[c * d + k] += x[i * d + k] / double(counts[c]);
  }
  // Class means differ: every pair is well apart compared with the per-pixel spread.
  for (int a = 0; a < 10; ++a) {
    for (int b = a + 1; b < 10; ++b) {
      double distance_squared = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double diff = means[a * d + k] - means[b * d + k];
        distance_squared += diff * diff;
      }
      EXPECT_GT(std::sqrt(distance_squared / d), 0.5) << "classes " << a << ", " << b;
    }
  }
  int64_t correct = 0;
  const float* t = test.images.data();
  for (int64_t i = 0; i < test.size(); ++i) {
    int best = -1;
    double best_distance = std::numeric_limits<double>::infinity();
    for (int c = 0; c < 10; ++c) {
      double distance = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double diff = t[i * d + k] - means[c * d + k];
        distance += diff * diff;
      }
      if (distance < best_distance) best_distance = distance, best = c;
    }
    correct += best == test.labels[i];
  }
  EXPECT_GT(static_cast<double>(correct) / test.size(), 0.8);
}

TEST(SyntheticTest, InvalidOptionsAreClearErrors) {
  auto expect_error = [](SyntheticOptions options, const std::string& part) {
    try {
      make_synthetic(options, true);
      ADD_FAILURE() << "expected an error mentioning " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  SyntheticOptions o = small_options();
  o.samples(0);
  expect_error(o, "samples must be positive, got 0");
  o = small_options();
  o.height(-1);
  expect_error(o, "channels, height and width must be positive");
  o = small_options();
  o.channels(0);
  expect_error(o, "channels, height and width must be positive");
  o = small_options();
  o.classes(1);
  expect_error(o, "classes must be at least 2, got 1");
  o = small_options();
  o.noise_std(-1.0f);
  expect_error(o, "noise_std");
  // C x H x W = 2^33 x 2^33 x 2 wraps a 64-bit product to 0.
  o = small_options();
  o.channels(int64_t{1} << 33);
  o.height(int64_t{1} << 33);
  o.width(2);
  expect_error(o, "overflows a 64-bit size");
  // Each sample fits, 2^40 samples of 2^30 floats do not.
  o = small_options();
  o.samples(int64_t{1} << 40);
  o.channels(int64_t{1} << 30);
  o.height(1);
  o.width(1);
  expect_error(o, "samples x C x H x W");
}

}  // namespace
}  // namespace syncbn::data
