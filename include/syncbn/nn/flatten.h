#pragma once
// Flatten (torch.nn.Flatten()): (N, *) -> (N, prod(*)). Like PyTorch's, the output shares the
// input's storage (a reshape, no copy); so does the gradient.
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class Flatten : public Module {
 public:
  std::string type_name() const override { return "Flatten"; }
  std::string describe() const override { return "start_dim=1, end_dim=-1"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Shape input_shape_;
};

}  // namespace syncbn::nn
