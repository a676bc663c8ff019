#include "ops/sgd.h"

#include "cpu/sgd.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/sgd.h"
#endif

namespace syncbn::ops {

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buffer,
                const SgdHyperparameters& hyper, bool first_step) {
  SYNCBN_CHECK(grad.shape() == param.shape(), "sgd_update: gradient ", shape_str(grad.shape()),
               " does not match parameter ", shape_str(param.shape()));
  const bool use_momentum = hyper.momentum != 0.0f;
  if (use_momentum) {
    SYNCBN_CHECK(momentum_buffer.defined() && momentum_buffer.shape() == param.shape(),
                 "sgd_update: momentum buffer ",
                 momentum_buffer.defined() ? shape_str(momentum_buffer.shape()) : "(undefined)",
                 " does not match parameter ", shape_str(param.shape()));
  }
  const Tensor no_buffer;  // undefined tensors are ignored by common_device
  const Device device = detail::common_device(
      "sgd_update", {&param, &grad, use_momentum ? &momentum_buffer : &no_buffer});
  SYNCBN_DISPATCH(device, sgd_update, param.data(), grad.data(),
                  use_momentum ? momentum_buffer.data() : nullptr, param.numel(), hyper.lr,
                  hyper.weight_decay, hyper.momentum, hyper.dampening, hyper.nesterov, first_step);
}

}  // namespace syncbn::ops
