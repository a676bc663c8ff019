#pragma once
// Stochastic gradient descent with momentum, exactly torch.optim.SGD's update:
//   d = grad + weight_decay * param
//   momentum > 0:  buf = d on the first step, then buf = momentum * buf + (1 - dampening) * d;
//                  d = nesterov ? d + momentum * buf : buf
//   param -= lr * d
#include <string>
#include <utility>
#include <vector>

#include "syncbn/arg.h"
#include "syncbn/nn/module.h"
#include "syncbn/tensor.h"

namespace syncbn::optim {

struct SgdOptions {
  SYNCBN_ARG(double, lr) = 0.1;
  SYNCBN_ARG(double, momentum) = 0.0;
  SYNCBN_ARG(double, dampening) = 0.0;
  SYNCBN_ARG(double, weight_decay) = 0.0;
  SYNCBN_ARG(bool, nesterov) = false;
  // False: no weight decay on parameters marked is_norm_or_bias (norm weights/biases and layer
  // biases), as in Goyal et al. and most ImageNet recipes.
  SYNCBN_ARG(bool, decay_norm_and_bias) = true;
};

class Sgd {
 public:
  // Throws syncbn::Error on lr < 0, momentum < 0, weight_decay < 0, or nesterov without
  // momentum > 0 and dampening == 0 (torch's rules).
  Sgd(std::vector<nn::ParameterPtr> params, SgdOptions options);

  // One update of every parameter from its current gradient (read at call time, so a gradient
  // replaced by a bucket view is honoured). Parameters with an undefined gradient are skipped.
  void step();
  // Sets every gradient to zero (torch's zero_grad(set_to_none=False)).
  void zero_grad();

  void set_lr(double lr);
  double lr() const { return options_.lr(); }
  const SgdOptions& options() const { return options_; }
  const std::vector<nn::ParameterPtr>& params() const { return params_; }

  // Optimizer state for checkpoints: "state.<index>.momentum_buffer" for every parameter whose
  // momentum buffer exists (torch's optimizer.state_dict()["state"], flattened). The tensors
  // share storage with the optimizer's buffers.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Restores momentum buffers saved by state_dict() (copied into buffers on each parameter's
  // device). Parameters absent from `state` start fresh, as after construction. Throws naming
  // an unknown key or a shape mismatch.
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state);

 private:
  std::vector<nn::ParameterPtr> params_;
  SgdOptions options_;
  // One per parameter, allocated on its first step when momentum > 0, reused afterwards.
  std::vector<Tensor> momentum_buffers_;
};

}  // namespace syncbn::optim
