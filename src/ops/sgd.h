#pragma once
// The SGD update on tensors: checks shapes and devices, then runs the device's kernel.
#include "syncbn/tensor.h"

namespace syncbn::ops {

struct SgdHyperparameters {
  float lr = 0.0f;
  float weight_decay = 0.0f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  bool nesterov = false;
};

// Updates `param` in place from `grad` (torch.optim.SGD's update, see cpu::sgd_update).
// momentum_buffer must be defined and shaped like param when momentum > 0; on the first step
// it is overwritten with the (decayed) gradient, so its contents need not be initialised.
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buffer,
                const SgdHyperparameters& hyper, bool first_step);

}  // namespace syncbn::ops
