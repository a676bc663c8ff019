#pragma once
// A learnable synthetic dataset for tests, benchmarks and runs without downloaded data.
#include <cstdint>

#include "syncbn/arg.h"
#include "syncbn/data/dataset.h"

namespace syncbn::data {

struct SyntheticOptions {
  SYNCBN_ARG(int64_t, samples) = 10000;
  SYNCBN_ARG(int64_t, channels) = 1;
  SYNCBN_ARG(int64_t, height) = 28;
  SYNCBN_ARG(int64_t, width) = 28;
  SYNCBN_ARG(int64_t, classes) = 10;
  SYNCBN_ARG(uint64_t, seed) = 0;
  // Standard deviation of the per-pixel noise around a class prototype (prototype pixels have
  // standard deviation 1). Larger is harder.
  SYNCBN_ARG(float, noise_std) = 1.0f;
};

// Each class c has a prototype image p_c with N(0, 1) pixels, drawn from `seed` alone, so the
// train and test splits share them. Sample i has a uniformly drawn label y_i and pixels
// x_i = (p_{y_i} + noise_std * N(0, 1)) / sqrt(1 + noise_std^2) (unit variance overall).
// Deterministic from (seed, train): each sample draws from its own stream, so the result does
// not depend on the number of threads. Throws syncbn::Error on non-positive sizes, fewer than 2
// classes or a negative noise.
Dataset make_synthetic(const SyntheticOptions& options, bool train);

}  // namespace syncbn::data
