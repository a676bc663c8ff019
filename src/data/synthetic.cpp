#include "syncbn/data/synthetic.h"

#include <cmath>

#include "syncbn/error.h"
#include "syncbn/random.h"
#include "util/checked.h"

namespace syncbn::data {

namespace {

// Stream ids under the user's seed: the prototypes are shared by both splits, the samples not.
constexpr uint64_t kPrototypeStream = 0;
constexpr uint64_t kTrainStream = 1;
constexpr uint64_t kTestStream = 2;

void check_options(const SyntheticOptions& o) {
  SYNCBN_CHECK(o.samples() > 0, "synthetic dataset: samples must be positive, got ", o.samples());
  SYNCBN_CHECK(o.channels() > 0 && o.height() > 0 && o.width() > 0,
               "synthetic dataset: channels, height and width must be positive, got ", o.channels(),
               "x", o.height(), "x", o.width());
  SYNCBN_CHECK(o.classes() >= 2, "synthetic dataset: classes must be at least 2, got ",
               o.classes());
  SYNCBN_CHECK(o.classes() <= (int64_t{1} << 31) - 1, "synthetic dataset: ", o.classes(),
               " classes do not fit an int32 label");
  SYNCBN_CHECK(std::isfinite(o.noise_std()) && o.noise_std() >= 0.0f,
               "synthetic dataset: noise_std must be finite and non-negative, got ", o.noise_std());
}

}  // namespace

Dataset make_synthetic(const SyntheticOptions& options, bool train) {
  check_options(options);
  const int64_t sample_numel =
      checked_product({options.channels(), options.height(), options.width()},
                      "synthetic dataset: sample shape C x H x W");
  // The whole split must have a size before anything is allocated or generated.
  checked_mul(
      checked_mul(options.samples(), sample_numel, "synthetic dataset: samples x C x H x W"),
      sizeof(float), "synthetic dataset: bytes of samples x C x H x W");
  Dataset dataset;
  // Allocated first: a split too large for memory fails before any prototype is generated.
  dataset.images =
      Tensor::empty({options.samples(), options.channels(), options.height(), options.width()});
  // One prototype per class; a tensor, so that a shape too large for memory is reported with its
  // size.
  Tensor prototypes =
      Tensor::empty({options.classes(), options.channels(), options.height(), options.width()});
  Generator prototype_generator(derive_seed(options.seed(), kPrototypeStream));
  float* prototype_values = prototypes.data();
  for (int64_t k = 0; k < prototypes.numel(); ++k) {
    prototype_values[k] = static_cast<float>(prototype_generator.normal());
  }

  dataset.name = train ? "synthetic-train" : "synthetic-test";
  dataset.num_classes = options.classes();
  dataset.labels.resize(static_cast<std::size_t>(options.samples()));

  const uint64_t split_seed = derive_seed(options.seed(), train ? kTrainStream : kTestStream);
  const double noise = options.noise_std();
  // Prototype and noise variances add up to 1 + noise^2; scale back to unit variance.
  const double scale = 1.0 / std::sqrt(1.0 + noise * noise);
  float* images = dataset.images.data();
  int32_t* labels = dataset.labels.data();
  // One generator per sample: the output is the same for any number of threads.
#pragma omp parallel for schedule(static) if (options.samples() * sample_numel > (int64_t{1} << 16))
  for (int64_t i = 0; i < options.samples(); ++i) {
    Generator generator(derive_seed(split_seed, static_cast<uint64_t>(i)));
    const auto label =
        static_cast<int32_t>(generator.below(static_cast<uint64_t>(options.classes())));
    labels[i] = label;
    const float* prototype = prototype_values + label * sample_numel;
    float* x = images + i * sample_numel;
    for (int64_t k = 0; k < sample_numel; ++k) {
      x[k] = static_cast<float>((prototype[k] + noise * generator.normal()) * scale);
    }
  }
  return dataset;
}

}  // namespace syncbn::data
