#pragma once
// Sequential: children applied in order; backward in reverse order.
#include <string>
#include <vector>

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

  // Each child's forward and backward become spans "<name>: <Type>" on the calling thread's
  // profile::Recorder timeline (syncbn/profile.h) while it records one; for the model's top
  // level. Labels are made now: call again after replacing a child.
  void trace_children(bool on);

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  std::vector<std::string> trace_labels_;  // one per child while tracing, else empty
};

}  // namespace syncbn::nn
