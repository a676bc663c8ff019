#include "syncbn/optim/sgd.h"

#include "ops/sgd.h"
#include "syncbn/error.h"

namespace syncbn::optim {

namespace {

void validate(const SgdOptions& options) {
  SYNCBN_CHECK(options.lr() >= 0.0, "SGD: invalid learning rate ", options.lr(), " (must be >= 0)");
  SYNCBN_CHECK(options.momentum() >= 0.0, "SGD: invalid momentum ", options.momentum(),
               " (must be >= 0)");
  SYNCBN_CHECK(options.weight_decay() >= 0.0, "SGD: invalid weight_decay ", options.weight_decay(),
               " (must be >= 0)");
  SYNCBN_CHECK(!options.nesterov() || (options.momentum() > 0.0 && options.dampening() == 0.0),
               "SGD: Nesterov momentum requires momentum > 0 and dampening = 0 (got momentum ",
               options.momentum(), ", dampening ", options.dampening(), ")");
}

std::string state_key(std::size_t index) {
  return "state." + std::to_string(index) + ".momentum_buffer";
}

}  // namespace

Sgd::Sgd(std::vector<nn::ParameterPtr> params, SgdOptions options)
    : params_(std::move(params)), options_(options), momentum_buffers_(params_.size()) {
  validate(options_);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    SYNCBN_CHECK(params_[i] != nullptr, "SGD: parameter ", i, " is null");
  }
}

void Sgd::step() {
  ops::SgdHyperparameters hyper;
  hyper.lr = static_cast<float>(options_.lr());
  hyper.momentum = static_cast<float>(options_.momentum());
  hyper.dampening = static_cast<float>(options_.dampening());
  hyper.nesterov = options_.nesterov();
  const bool use_momentum = options_.momentum() != 0.0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    nn::Parameter& param = *params_[i];
    if (!param.grad.defined()) continue;
    const bool decay = options_.decay_norm_and_bias() || !param.is_norm_or_bias;
    hyper.weight_decay = decay ? static_cast<float>(options_.weight_decay()) : 0.0f;
    Tensor& buffer = momentum_buffers_[i];
    const bool first_step = use_momentum && !buffer.defined();
    if (first_step) buffer = Tensor::empty(param.value.shape(), param.value.device());
    ops::sgd_update(param.value, param.grad, buffer, hyper, first_step);
  }
}

void Sgd::zero_grad() {
  for (auto& param : params_) {
    if (param->grad.defined()) param->grad.zero_();
  }
}

void Sgd::set_lr(double lr) {
  SYNCBN_CHECK(lr >= 0.0, "SGD: invalid learning rate ", lr, " (must be >= 0)");
  options_.lr(lr);
}

std::vector<std::pair<std::string, Tensor>> Sgd::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> state;
  for (std::size_t i = 0; i < momentum_buffers_.size(); ++i) {
    if (momentum_buffers_[i].defined()) state.emplace_back(state_key(i), momentum_buffers_[i]);
  }
  return state;
}

void Sgd::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state) {
  std::vector<Tensor> buffers(params_.size());
  for (const auto& [key, tensor] : state) {
    std::size_t index = params_.size();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (key == state_key(i)) index = i;
    }
    SYNCBN_CHECK(index < params_.size(), "SGD state: unexpected key '", key,
                 "' (the optimizer has ", params_.size(),
                 " parameters; keys are state.<index>.momentum_buffer)");
    const Tensor& value = params_[index]->value;
    SYNCBN_CHECK(tensor.shape() == value.shape(), "SGD state: ", key, " has shape ",
                 shape_str(tensor.shape()), ", parameter ", index, " has shape ",
                 shape_str(value.shape()));
    buffers[index] = Tensor::empty(value.shape(), value.device());
    buffers[index].copy_from(tensor);
  }
  momentum_buffers_ = std::move(buffers);
}

}  // namespace syncbn::optim
