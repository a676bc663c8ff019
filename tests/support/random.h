#pragma once
// Seeded random test data: the same seed gives the same numbers on every machine.
//   random_values(n, seed, std, mean)       n floats from N(mean, std^2)
//   random_tensor(shape, seed, std, mean)   a CPU tensor of such floats
//   random_labels(n, classes, seed)         n class indices, uniform in [0, classes)
#include <cstddef>
#include <cstdint>
#include <vector>

#include "syncbn/random.h"
#include "syncbn/tensor.h"

namespace syncbn::testing {

inline std::vector<float> random_values(int64_t n, uint64_t seed, float std = 1.0f,
                                        float mean = 0.0f) {
  Generator gen(seed);
  std::vector<float> values(static_cast<std::size_t>(n));
  for (auto& v : values) v = gen.normal(mean, std);
  return values;
}

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float std = 1.0f,
                            float mean = 0.0f) {
  return Tensor::from_vector(shape, random_values(shape_numel(shape), seed, std, mean));
}

inline std::vector<int32_t> random_labels(int64_t n, int64_t classes, uint64_t seed) {
  Generator gen(seed);
  std::vector<int32_t> labels(static_cast<std::size_t>(n));
  for (auto& label : labels)
    label = static_cast<int32_t>(gen.below(static_cast<uint64_t>(classes)));
  return labels;
}

}  // namespace syncbn::testing
