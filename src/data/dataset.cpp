#include "syncbn/data/dataset.h"

#include <algorithm>
#include <cstddef>

#include "syncbn/error.h"

namespace syncbn::data {

Shape Dataset::sample_shape() const {
  SYNCBN_CHECK(images.ndim() >= 1, "dataset '", name, "': images have no sample dimension");
  return Shape(images.shape().begin() + 1, images.shape().end());
}

int64_t Dataset::sample_numel() const { return shape_numel(sample_shape()); }

void check_dataset(const Dataset& dataset) {
  const std::string& name = dataset.name;
  SYNCBN_CHECK(dataset.images.defined(), "dataset '", name, "' has no images");
  SYNCBN_CHECK(dataset.images.ndim() == 4, "dataset '", name,
               "': images must be (N, C, H, W), got ", shape_str(dataset.images.shape()));
  SYNCBN_CHECK(dataset.images.device().is_cpu(), "dataset '", name,
               "': images must be in host memory, they are on ", dataset.images.device().str());
  SYNCBN_CHECK(dataset.images.size(0) == dataset.size(), "dataset '", name, "' has ",
               dataset.images.size(0), " images but ", dataset.size(), " labels");
  SYNCBN_CHECK(dataset.num_classes >= 2, "dataset '", name, "' needs at least 2 classes, has ",
               dataset.num_classes);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int32_t label = dataset.labels[static_cast<std::size_t>(i)];
    SYNCBN_CHECK(label >= 0 && label < dataset.num_classes, "dataset '", name, "': label ", label,
                 " of sample ", i, " is outside [0, ", dataset.num_classes, ")");
  }
}

std::vector<int64_t> class_counts(const Dataset& dataset) {
  std::vector<int64_t> counts(static_cast<std::size_t>(dataset.num_classes), 0);
  for (int32_t label : dataset.labels) {
    SYNCBN_CHECK(label >= 0 && label < dataset.num_classes, "dataset '", dataset.name, "': label ",
                 label, " is outside [0, ", dataset.num_classes, ")");
    ++counts[static_cast<std::size_t>(label)];
  }
  return counts;
}

namespace {

// 64-bit FNV-1a: h = (h xor byte) * prime, byte by byte.
class Fnv1a {
 public:
  void add(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) hash_ = (hash_ ^ p[i]) * 0x100000001b3ULL;
  }
  void add(int64_t value) { add(&value, sizeof value); }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

}  // namespace

uint64_t fingerprint(const Dataset& dataset) {
  check_dataset(dataset);
  Fnv1a hash;
  const int64_t n = dataset.size();
  hash.add(n);
  for (int64_t extent : dataset.sample_shape()) hash.add(extent);
  hash.add(dataset.num_classes);
  hash.add(dataset.labels.data(), dataset.labels.size() * sizeof(int32_t));
  const int64_t numel = dataset.sample_numel();
  const float* images = dataset.images.data();
  const int64_t picked = std::min(n, kFingerprintSamples);
  for (int64_t k = 0; k < picked; ++k) {
    const int64_t i = k * n / picked;  // evenly spaced, first sample included
    hash.add(images + i * numel, static_cast<std::size_t>(numel) * sizeof(float));
  }
  return hash.value();
}

}  // namespace syncbn::data
