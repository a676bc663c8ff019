#pragma once
// Deterministic random numbers: the same seed gives the same stream on every machine and
// compiler (std::*_distribution is implementation-defined, so we do not use it).
#include <cstdint>

namespace syncbn {

// SplitMix64 to seed, xoshiro256** to generate.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  uint64_t next_u64();
  // Uniform in [0, 1).
  double uniform();
  float uniform(float low, float high) {
    return low + static_cast<float>(uniform()) * (high - low);
  }
  // Standard normal (Box-Muller, both values used).
  double normal();
  float normal(float mean, float std) { return mean + std * static_cast<float>(normal()); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n);

 private:
  uint64_t state_[4];
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

// A seed derived from a base seed and a stream id (epoch, rank, layer...), well mixed.
uint64_t derive_seed(uint64_t seed, uint64_t stream);

}  // namespace syncbn
