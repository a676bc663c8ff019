#pragma once
// An in-memory labelled image dataset: every sample already decoded and normalised.
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::data {

struct Dataset {
  Tensor images;                // (N, C, H, W) float32 on the CPU, normalised
  std::vector<int32_t> labels;  // N labels in [0, num_classes)
  int64_t num_classes = 0;
  std::string name;  // "fashion-mnist-train", "synthetic-test", ... (for messages)

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  // (C, H, W): the shape of one sample.
  Shape sample_shape() const;
  // C * H * W: floats per sample.
  int64_t sample_numel() const;
};

// Throws syncbn::Error naming the dataset when it is inconsistent: images not 4-D or not on
// the CPU, image and label counts differ, fewer than 2 classes, or a label out of range.
void check_dataset(const Dataset& dataset);

// Number of samples of each class (num_classes entries).
std::vector<int64_t> class_counts(const Dataset& dataset);

// A 64-bit fingerprint of a dataset's content, for checking that every rank of a job has the
// same data: FNV-1a over the sample count, the sample shape, num_classes, every label and the
// image values of kFingerprintSamples evenly spaced samples (all of them when there are fewer).
// Cheap for any size (about 3 MB hashed for 28x28 images); a change confined to images outside
// the subset goes unseen, a change of size, labels or a sampled image almost surely does not.
inline constexpr int64_t kFingerprintSamples = 1024;
uint64_t fingerprint(const Dataset& dataset);

}  // namespace syncbn::data
