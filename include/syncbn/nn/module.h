#pragma once
// Module: explicit forward/backward (no tape), named parameters, buffers and children with
// PyTorch state_dict names ("layer1.0.bn1.running_mean").
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::nn {

// A learnable tensor and its gradient (same shape and device). Gradients accumulate across
// backward calls until zero_grad(), as in PyTorch.
struct Parameter {
  Tensor value;
  Tensor grad;
  // True for norm weights/biases and layer biases: SGD may skip weight decay on these.
  bool is_norm_or_bias = false;
  // Called right after the owning module's backward has finished writing `grad`; DataParallel
  // uses it to start a gradient bucket's allreduce while backward goes on.
  std::function<void(Parameter&)> on_grad_ready;
};

using ParameterPtr = std::shared_ptr<Parameter>;
using NamedParameter = std::pair<std::string, ParameterPtr>;
using NamedBuffer = std::pair<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Forward keeps what backward needs; backward(dy) accumulates parameter gradients, fires the
  // parameters' on_grad_ready hooks and returns dx.
  Tensor forward(const Tensor& x) { return forward_impl(x); }
  Tensor backward(const Tensor& dy);

  // The PyTorch class name ("BatchNorm2d"), for printing and model signatures.
  virtual std::string type_name() const = 0;
  // Extra description for printing ("784, 256").
  virtual std::string describe() const { return ""; }

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Recursive, in registration order, names joined with '.'.
  std::vector<NamedParameter> named_parameters(const std::string& prefix = "") const;
  std::vector<NamedBuffer> named_buffers(const std::string& prefix = "") const;
  std::vector<ParameterPtr> parameters() const;
  // Parameters then buffers, as torch's state_dict orders them per module.
  std::vector<NamedBuffer> state_dict() const;

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  std::shared_ptr<Module> child(const std::string& name) const;
  // Replaces a direct child (used by convert_sync_batchnorm).
  void replace_child(const std::string& name, std::shared_ptr<Module> module);

  void zero_grad();
  // Moves parameters, gradients and buffers to `device` (in place for the handles held here).
  void to(Device device);

  // Multi-line printout like PyTorch's repr.
  std::string str(int indent = 0) const;

 protected:
  virtual Tensor forward_impl(const Tensor& x) = 0;
  virtual Tensor backward_impl(const Tensor& dy) = 0;
  // Called after train()/eval() switched this module (children are handled by train()).
  virtual void on_train_mode_changed() {}

  ParameterPtr register_parameter(const std::string& name, Tensor value, bool is_norm_or_bias);
  // Buffers are updated in place; the handle returned shares their storage.
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }
  // Direct access for subclasses that share state (SyncBatchNorm built from a BatchNorm).
  std::vector<NamedParameter>& own_parameters() { return parameters_; }
  std::vector<NamedBuffer>& own_buffers() { return buffers_; }
  Tensor& own_buffer(const std::string& name);

 private:
  bool training_ = true;
  std::vector<NamedParameter> parameters_;
  std::vector<NamedBuffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

using ModulePtr = std::shared_ptr<Module>;

// Copies `state` into the module's parameters and buffers (module.state_dict() names), on
// their devices. Strict like torch's load_state_dict: missing keys, unexpected keys, duplicate
// keys and shape mismatches are all reported in one syncbn::Error, and nothing is copied then.
void load_state_dict(Module& module, const std::vector<NamedBuffer>& state);

// One line per tensor, "name [shape]" ("layer1.0.bn1.weight [64]"), in the order given (pass
// module.state_dict()): what DataParallel checks across ranks and what a checkpoint records.
std::vector<std::string> model_signature(const std::vector<NamedBuffer>& state);

}  // namespace syncbn::nn
