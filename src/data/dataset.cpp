#include "syncbn/data/dataset.h"

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

}  // namespace syncbn::data
