#include "syncbn/data/loader.h"

#include <cstring>

#include "syncbn/error.h"

namespace syncbn::data {

namespace {
// Below this many floats a gather is faster on one thread than the cost of waking the team.
constexpr int64_t kParallelGatherFloats = int64_t{1} << 16;
}  // namespace

void gather_samples(const Dataset& dataset, const std::vector<int64_t>& indices, float* images,
                    int32_t* labels) {
  const int64_t count = static_cast<int64_t>(indices.size());
  const int64_t sample_numel = dataset.sample_numel();
  const int64_t size = dataset.size();
  for (int64_t index : indices) {
    SYNCBN_CHECK(index >= 0 && index < size, "gather: sample index ", index,
                 " is out of range for dataset '", dataset.name, "' of ", size, " samples");
  }
  const float* source = dataset.images.data();
  const int32_t* source_labels = dataset.labels.data();
#pragma omp parallel for schedule(static) if (count * sample_numel > kParallelGatherFloats)
  for (int64_t i = 0; i < count; ++i) {
    const int64_t index = indices[static_cast<std::size_t>(i)];
    std::memcpy(images + i * sample_numel, source + index * sample_numel,
                static_cast<std::size_t>(sample_numel) * sizeof(float));
    labels[i] = source_labels[index];
  }
}

Loader::Loader(Dataset dataset, DistributedSampler sampler, Device device)
    : dataset_(std::move(dataset)), sampler_(std::move(sampler)), device_(device) {
  check_dataset(dataset_);
  SYNCBN_CHECK(sampler_.dataset_size() == dataset_.size(), "Loader: the sampler covers ",
               sampler_.dataset_size(), " samples but dataset '", dataset_.name, "' has ",
               dataset_.size());
  Shape shape = dataset_.sample_shape();
  shape.insert(shape.begin(), sampler_.batch_per_rank());
  host_buffer_ = Tensor::empty(shape);
  if (!device_.is_cpu()) device_buffer_ = Tensor::empty(shape, device_);
  batch_.labels.reserve(static_cast<std::size_t>(sampler_.batch_per_rank()));
  batch_.indices.reserve(static_cast<std::size_t>(sampler_.batch_per_rank()));
}

Batch& Loader::batch(int64_t step) {
  sampler_.indices(step, batch_.indices);
  const auto count = static_cast<int64_t>(batch_.indices.size());
  batch_.labels.resize(static_cast<std::size_t>(count));
  Shape shape = dataset_.sample_shape();
  shape.insert(shape.begin(), count);
  Tensor host = host_buffer_.view(shape);
  gather_samples(dataset_, batch_.indices, host.data(), batch_.labels.data());
  if (device_.is_cpu()) {
    batch_.images = host;
  } else {
    batch_.images = device_buffer_.view(shape);
    batch_.images.copy_from(host);
  }
  return batch_;
}

void for_each_chunk(const Dataset& dataset, int64_t begin, int64_t end, int64_t chunk,
                    const std::function<void(const Batch&)>& fn, Device device) {
  SYNCBN_CHECK(chunk > 0, "for_each_chunk: chunk size must be positive, got ", chunk);
  SYNCBN_CHECK(0 <= begin && begin <= end && end <= dataset.size(), "for_each_chunk: range [",
               begin, ", ", end, ") is not inside dataset '", dataset.name, "' of ", dataset.size(),
               " samples");
  SYNCBN_CHECK(dataset.images.device().is_cpu(), "for_each_chunk: dataset '", dataset.name,
               "' must be in host memory");
  const Shape sample_shape = dataset.sample_shape();
  const int64_t sample_numel = shape_numel(sample_shape);
  Tensor device_buffer;
  if (!device.is_cpu() && end > begin) {
    Shape shape = sample_shape;
    shape.insert(shape.begin(), std::min(chunk, end - begin));
    device_buffer = Tensor::empty(shape, device);
  }
  Batch batch;
  for (int64_t first = begin; first < end; first += chunk) {
    const int64_t count = std::min(chunk, end - first);
    Shape shape = sample_shape;
    shape.insert(shape.begin(), count);
    // Contiguous samples: the chunk is a view of the dataset's own storage.
    Tensor host = dataset.images.view(shape, first * sample_numel);
    if (device.is_cpu()) {
      batch.images = host;
    } else {
      batch.images = device_buffer.view(shape);
      batch.images.copy_from(host);
    }
    batch.labels.assign(dataset.labels.begin() + first, dataset.labels.begin() + first + count);
    batch.indices.resize(static_cast<std::size_t>(count));
    for (int64_t i = 0; i < count; ++i) batch.indices[static_cast<std::size_t>(i)] = first + i;
    fn(batch);
  }
}

}  // namespace syncbn::data
