#pragma once
// Activations: ReLU.
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

// y = max(x, 0); dx = dy where x > 0 (0 at x = 0, as PyTorch).
class ReLU : public Module {
 public:
  std::string type_name() const override { return "ReLU"; }
  // The last forward's output (undefined before the first): the health report counts its zeros.
  const Tensor& output() const { return output_; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Tensor output_;  // the last forward's output: y > 0 exactly where x > 0
};

}  // namespace syncbn::nn
