#pragma once
// Sequential: children applied in order; backward in reverse order.
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  // Appends a child named by its position ("0", "1", ...), as torch.nn.Sequential does.
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> module) {
    return register_module(std::to_string(children().size()), std::move(module));
  }
  // Appends a child with an explicit name ("conv1", "layer1"), as a torch Module's attributes.
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }
  std::size_t size() const { return children().size(); }
  std::string type_name() const override { return "Sequential"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;
};

}  // namespace syncbn::nn
