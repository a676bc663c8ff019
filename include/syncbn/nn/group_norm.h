#pragma once
// GroupNorm with PyTorch semantics: input (N, C, *), the C channels split into G groups of C/G
// consecutive channels, statistics per (sample, group) over (C/G) * prod(*) values:
//   y = weight_c * (x - mean_ng) / sqrt(var_ng + eps) + bias_c     (var biased)
// The same in training and evaluation (no running statistics). Parameters "weight" (ones) and
// "bias" (zeros), C values each, when affine.
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);

  std::string type_name() const override { return "GroupNorm"; }
  // "2, 4, eps=1e-05, affine=True"
  std::string describe() const override;

  int64_t num_groups() const { return num_groups_; }
  int64_t num_channels() const { return num_channels_; }
  double eps() const { return eps_; }
  bool affine() const { return weight_ != nullptr; }
  // Null when not affine.
  ParameterPtr weight() const { return weight_; }
  ParameterPtr bias() const { return bias_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int64_t num_groups_;
  int64_t num_channels_;
  double eps_;
  ParameterPtr weight_;
  ParameterPtr bias_;
  // Kept by forward for backward; the statistics are (N * G) and reused between steps.
  Tensor saved_input_;
  Tensor saved_mean_;
  Tensor saved_invstd_;
};

}  // namespace syncbn::nn
