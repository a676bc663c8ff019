#pragma once
// How the normalisation kernels view their input: the layout arguments of cpu/batch_norm.h,
// cpu/group_norm.h and their CUDA twins, filled by the ops from a tensor's shape. Plain structs,
// shared by both backends (like Conv2dShape); this header is also compiled as CUDA C++17.
#include <cstdint>

namespace syncbn::cpu {

// x (N, C, *) viewed as (N, C, S) with S = prod(*) (NCHW), or as (N, S, C) when channels_last
// (NHWC). Every batch-norm statistic is per channel, over count() = N * S values.
struct BatchNormShape {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t spatial = 1;
  bool channels_last = false;

  int64_t count() const { return batch * spatial; }
  int64_t numel() const { return batch * channels * spatial; }
};

// x (N, C, *) contiguous NCHW, viewed as (N, C, S) with S = prod(*); the C channels form
// `groups` groups of C/G consecutive channels, and every statistic is per (sample, group) row.
struct GroupNormShape {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t spatial = 1;
  int64_t groups = 1;

  int64_t rows() const { return batch * groups; }
  int64_t channels_per_group() const { return channels / groups; }
  // D = (C/G) * S values per row.
  int64_t row_size() const { return channels_per_group() * spatial; }
  int64_t numel() const { return batch * channels * spatial; }
};

}  // namespace syncbn::cpu
