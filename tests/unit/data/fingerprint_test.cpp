// data::fingerprint: equal data agree, and a change of size, shape, labels or a sampled image
// changes it (what lets the ranks of a job check that they read the same data).
#include <gtest/gtest.h>

#include "syncbn/data/dataset.h"
#include "syncbn/data/synthetic.h"

namespace syncbn::data {
namespace {

Dataset small(int64_t samples, int64_t seed = 17) {
  SyntheticOptions options;
  options.samples(samples);
  options.channels(1);
  options.height(4);
  options.width(3);
  options.classes(4);
  options.seed(seed);
  return make_synthetic(options, true);
}

TEST(FingerprintTest, EqualDataGiveEqualFingerprints) {
  EXPECT_EQ(fingerprint(small(300)), fingerprint(small(300)));
  EXPECT_EQ(fingerprint(small(5000)), fingerprint(small(5000)));
}

TEST(FingerprintTest, OtherSizeOrContentGivesAnotherFingerprint) {
  const uint64_t reference = fingerprint(small(300));
  EXPECT_NE(fingerprint(small(299)), reference);
  EXPECT_NE(fingerprint(small(300, 18)), reference);

  Dataset label = small(300);
  label.labels[123] = (label.labels[123] + 1) % 4;
  EXPECT_NE(fingerprint(label), reference);

  Dataset pixel = small(300);  // fewer samples than kFingerprintSamples: every image counts
  pixel.images.data()[pixel.sample_numel() * 299 + 5] += 1.0f;
  EXPECT_NE(fingerprint(pixel), reference);
}

TEST(FingerprintTest, ABigDatasetIsSampledEvenlyFromTheFirstSample) {
  const int64_t n = 5 * kFingerprintSamples;
  const uint64_t reference = fingerprint(small(n));
  Dataset first = small(n);
  first.images.data()[0] += 1.0f;
  EXPECT_NE(fingerprint(first), reference);
  // Sample k * n / kFingerprintSamples = 5k is hashed; sample 1 is not (its label still is).
  Dataset fifth = small(n);
  fifth.images.data()[fifth.sample_numel() * 5] += 1.0f;
  EXPECT_NE(fingerprint(fifth), reference);
  Dataset unsampled = small(n);
  unsampled.images.data()[unsampled.sample_numel() * 1] += 1.0f;
  EXPECT_EQ(fingerprint(unsampled), reference);
}

}  // namespace
}  // namespace syncbn::data
