#pragma once
// Linear: y = x W^T + b (torch.nn.Linear), x (N, in_features) -> y (N, out_features).
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class Linear : public Module {
 public:
  // weight (out, in) and bias (out) ~ U(-1/sqrt(in), 1/sqrt(in)) from Generator(seed), the
  // distribution of PyTorch's default initialisation.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, uint64_t seed = 0);

  std::string type_name() const override { return "Linear"; }
  std::string describe() const override;  // "in_features=784, out_features=256, bias=True"

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Parameter& weight() { return *weight_; }
  // Null without a bias.
  Parameter* bias() { return bias_.get(); }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int64_t in_features_, out_features_;
  ParameterPtr weight_, bias_;
  Tensor input_;  // the last forward's input, for the weight gradient
};

}  // namespace syncbn::nn
