#pragma once
// LayerNorm with PyTorch semantics: input (*, normalized_shape); statistics per leading index
// over the D = prod(normalized_shape) trailing values:
//   y = weight * (x - mean) / sqrt(var + eps) + bias     (var biased; weight, bias elementwise)
// Parameters "weight" (ones) and "bias" (zeros) of shape normalized_shape when
// elementwise_affine.
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, double eps = 1e-5,
                     bool elementwise_affine = true);

  std::string type_name() const override { return "LayerNorm"; }
  // "(3, 4), eps=1e-05, elementwise_affine=True"
  std::string describe() const override;

  const std::vector<int64_t>& normalized_shape() const { return normalized_shape_; }
  double eps() const { return eps_; }
  bool elementwise_affine() const { return weight_ != nullptr; }
  // Null when not elementwise_affine.
  ParameterPtr weight() const { return weight_; }
  ParameterPtr bias() const { return bias_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  void check_input(const Tensor& x) const;

  std::vector<int64_t> normalized_shape_;
  int64_t normalized_numel_;
  double eps_;
  ParameterPtr weight_;
  ParameterPtr bias_;
  Tensor saved_input_;
  Tensor saved_mean_;
  Tensor saved_invstd_;
};

}  // namespace syncbn::nn
