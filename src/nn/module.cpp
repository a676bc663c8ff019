#include "syncbn/nn/module.h"

#include <map>
#include <set>
#include <sstream>

#include "syncbn/error.h"

namespace syncbn::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}
}  // namespace

Tensor Module::backward(const Tensor& dy) {
  Tensor dx = backward_impl(dy);
  for (auto& [name, param] : parameters_) {
    if (param->on_grad_ready) param->on_grad_ready(*param);
  }
  return dx;
}

void Module::train(bool on) {
  training_ = on;
  on_train_mode_changed();
  for (auto& [name, child] : children_) child->train(on);
}

std::vector<NamedParameter> Module::named_parameters(const std::string& prefix) const {
  std::vector<NamedParameter> out;
  for (const auto& [name, param] : parameters_) out.emplace_back(join(prefix, name), param);
  for (const auto& [name, child] : children_) {
    for (auto& entry : child->named_parameters(join(prefix, name))) out.push_back(std::move(entry));
  }
  return out;
}

std::vector<NamedBuffer> Module::named_buffers(const std::string& prefix) const {
  std::vector<NamedBuffer> out;
  for (const auto& [name, buffer] : buffers_) out.emplace_back(join(prefix, name), buffer);
  for (const auto& [name, child] : children_) {
    for (auto& entry : child->named_buffers(join(prefix, name))) out.push_back(std::move(entry));
  }
  return out;
}

std::vector<ParameterPtr> Module::parameters() const {
  std::vector<ParameterPtr> out;
  for (auto& [name, param] : named_parameters()) out.push_back(param);
  return out;
}

std::vector<NamedBuffer> Module::state_dict() const {
  // torch orders each module's own parameters, then its buffers, then recurses into children.
  std::vector<NamedBuffer> out;
  std::function<void(const Module&, const std::string&)> visit = [&](const Module& m,
                                                                     const std::string& prefix) {
    for (const auto& [name, param] : m.parameters_)
      out.emplace_back(join(prefix, name), param->value);
    for (const auto& [name, buffer] : m.buffers_) out.emplace_back(join(prefix, name), buffer);
    for (const auto& [name, child] : m.children_) visit(*child, join(prefix, name));
  };
  visit(*this, "");
  return out;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  for (const auto& [child_name, child] : children_) {
    if (child_name == name) return child;
  }
  SYNCBN_FAIL("module ", type_name(), " has no child named '", name, "'");
}

void Module::replace_child(const std::string& name, std::shared_ptr<Module> module) {
  for (auto& [child_name, child] : children_) {
    if (child_name == name) {
      child = std::move(module);
      return;
    }
  }
  SYNCBN_FAIL("module ", type_name(), " has no child named '", name, "'");
}

void Module::zero_grad() {
  for (auto& param : parameters()) {
    if (param->grad.defined()) param->grad.zero_();
  }
}

void Module::to(Device device) {
  for (auto& [name, param] : parameters_) {
    param->value = param->value.to(device);
    param->grad = param->grad.defined() ? param->grad.to(device) : Tensor();
  }
  for (auto& [name, buffer] : buffers_) buffer = buffer.to(device);
  for (auto& [name, child] : children_) child->to(device);
}

std::string Module::str(int indent) const {
  std::ostringstream out;
  out << type_name() << "(" << describe();
  if (!children_.empty()) {
    out << "\n";
    for (const auto& [name, child] : children_) {
      out << std::string(indent + 2, ' ') << "(" << name << "): " << child->str(indent + 2) << "\n";
    }
    out << std::string(indent, ' ');
  }
  out << ")";
  return out.str();
}

ParameterPtr Module::register_parameter(const std::string& name, Tensor value,
                                        bool is_norm_or_bias) {
  auto param = std::make_shared<Parameter>();
  param->grad = Tensor::zeros(value.shape(), value.device());
  param->value = std::move(value);
  param->is_norm_or_bias = is_norm_or_bias;
  parameters_.emplace_back(name, param);
  return param;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  buffers_.emplace_back(name, value);
  return value;
}

Tensor& Module::own_buffer(const std::string& name) {
  for (auto& [buffer_name, buffer] : buffers_) {
    if (buffer_name == name) return buffer;
  }
  SYNCBN_FAIL("module ", type_name(), " has no buffer named '", name, "'");
}

namespace {

// PyTorch stores num_batches_tracked as a 0-dim tensor; ours holds its one value in shape [1].
bool loadable_shape(const Shape& given, const Shape& target) {
  return given == target || (given.empty() && target == Shape{1});
}

}  // namespace

void load_state_dict(Module& module, const std::vector<NamedBuffer>& state) {
  const auto targets = module.state_dict();
  std::map<std::string, const Tensor*> given;
  std::string duplicates, missing, unexpected;
  auto append = [](std::string& list, const std::string& name) {
    list += (list.empty() ? "" : ", ") + ("\"" + name + "\"");
  };
  for (const auto& [name, tensor] : state) {
    if (!given.emplace(name, &tensor).second) append(duplicates, name);
  }
  std::set<std::string> target_names;
  std::string mismatches;
  for (const auto& [name, target] : targets) {
    target_names.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      append(missing, name);
    } else if (!loadable_shape(it->second->shape(), target.shape())) {
      mismatches += "; size mismatch for " + name + ": copying a tensor of shape " +
                    shape_str(it->second->shape()) + " from the checkpoint, the shape in the " +
                    "current model is " + shape_str(target.shape());
    }
  }
  for (const auto& [name, tensor] : state) {
    if (!target_names.count(name)) append(unexpected, name);
  }
  std::string message;
  if (!duplicates.empty()) message += "; duplicate key(s): " + duplicates;
  if (!missing.empty()) message += "; missing key(s) in state_dict: " + missing;
  if (!unexpected.empty()) message += "; unexpected key(s) in state_dict: " + unexpected;
  message += mismatches;
  SYNCBN_CHECK(message.empty(), "error(s) in loading state_dict for ", module.type_name(), ": ",
               message.empty() ? message : message.substr(2));

  for (const auto& [name, target] : targets) {
    Tensor destination = target;  // shares storage with the module's parameter or buffer
    const Tensor& source = *given.at(name);
    destination.copy_from(source.shape() == target.shape() ? source
                                                           : source.reshape(target.shape()));
  }
}

std::vector<std::string> model_signature(const std::vector<NamedBuffer>& state) {
  std::vector<std::string> lines;
  lines.reserve(state.size());
  for (const auto& [name, tensor] : state) lines.push_back(name + " " + shape_str(tensor.shape()));
  return lines;
}

}  // namespace syncbn::nn
