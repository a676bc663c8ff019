#pragma once
// InstanceNorm2d with PyTorch semantics: input (N, C, H, W) or unbatched (C, H, W); statistics
// per (sample, channel) over H * W values (GroupNorm with one channel per group):
//   y = weight_c * (x - mean_nc) / sqrt(var_nc + eps) + bias_c
// With track_running_stats, training also updates
//   running_mean = (1 - m) running_mean + m mean_n(mean_nc)
//   running_var  = (1 - m) running_var  + m mean_n(var_nc * HW/(HW - 1))
// and evaluation normalises with the running statistics instead. Parameters "weight", "bias"
// when affine; buffers "running_mean", "running_var", "num_batches_tracked" when tracking
// (num_batches_tracked is kept for state_dict compatibility; like torch, InstanceNorm does not
// advance it).
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class InstanceNorm2d : public Module {
 public:
  explicit InstanceNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                          bool affine = false, bool track_running_stats = false);

  std::string type_name() const override { return "InstanceNorm2d"; }
  // "3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False"
  std::string describe() const override;

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return weight_ != nullptr; }
  bool track_running_stats() const { return track_running_stats_; }
  // Null when not affine.
  ParameterPtr weight() const { return weight_; }
  ParameterPtr bias() const { return bias_; }
  // Undefined when statistics are not tracked.
  Tensor running_mean();
  Tensor running_var();

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  // x as (N, C, H, W) (an unbatched input gets N = 1).
  Tensor batched(const Tensor& x) const;

  int64_t num_features_;
  double eps_;
  double momentum_;
  bool track_running_stats_;
  ParameterPtr weight_;
  ParameterPtr bias_;
  Tensor saved_input_;  // batched
  Tensor saved_mean_;
  Tensor saved_invstd_;
  bool saved_instance_stats_ = false;
};

}  // namespace syncbn::nn
