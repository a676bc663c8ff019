#pragma once
// Gathers a rank's samples of a step into a batch buffer allocated once and reused.
#include <cstdint>
#include <functional>
#include <vector>

#include "syncbn/data/dataset.h"
#include "syncbn/data/sampler.h"
#include "syncbn/device.h"
#include "syncbn/tensor.h"

namespace syncbn::data {

struct Batch {
  Tensor images;                 // (n, C, H, W); n may be 0
  std::vector<int32_t> labels;   // n labels (host memory)
  std::vector<int64_t> indices;  // the dataset indices of the n samples

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

class Loader {
 public:
  // The dataset's images must be on the CPU; batches are delivered on `device` (a CUDA device
  // gets one host-to-device copy per batch into a buffer allocated once).
  Loader(Dataset dataset, DistributedSampler sampler, Device device = Device::cpu());

  // The samples of `step` for this rank. The returned batch and its images are overwritten by
  // the next call: images is a view of a buffer of batch_per_rank samples (a shorter view for
  // a short last batch, shape (0, C, H, W) for an empty one).
  Batch& batch(int64_t step);

  void set_epoch(int64_t epoch, int64_t start_sample = 0) {
    sampler_.set_epoch(epoch, start_sample);
  }
  int64_t steps_per_epoch() const { return sampler_.steps_per_epoch(); }
  int64_t steps_in_epoch() const { return sampler_.steps_in_epoch(); }
  const DistributedSampler& sampler() const { return sampler_; }
  const Dataset& dataset() const { return dataset_; }

 private:
  Dataset dataset_;
  DistributedSampler sampler_;
  Device device_;
  Tensor host_buffer_;    // (batch_per_rank, C, H, W) on the CPU
  Tensor device_buffer_;  // same on device_, when device_ is not the CPU
  Batch batch_;
};

// Copies images[indices[i]] to out + i * sample_numel and labels likewise (OpenMP when the
// batch is large). Indices must be in range.
void gather_samples(const Dataset& dataset, const std::vector<int64_t>& indices, float* images,
                    int32_t* labels);

// Evaluation: calls fn on consecutive chunks of samples [begin, begin + chunk), ... up to end
// (the last one shorter). On the CPU the chunk's images are a view of the dataset (no copy);
// on a CUDA device they are copied into one reused buffer. The Batch is valid during fn only.
void for_each_chunk(const Dataset& dataset, int64_t begin, int64_t end, int64_t chunk,
                    const std::function<void(const Batch&)>& fn, Device device = Device::cpu());

}  // namespace syncbn::data
