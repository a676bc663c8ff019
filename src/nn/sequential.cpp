#include "syncbn/nn/sequential.h"

#include "syncbn/profile.h"

namespace syncbn::nn {

void Sequential::trace_children(bool on) {
  trace_labels_.clear();
  if (!on) return;
  for (const auto& [name, child] : children())
    trace_labels_.push_back(name + ": " + child->type_name());
}

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor h = x;
  const auto& layers = children();
  const bool traced = trace_labels_.size() == layers.size();  // a child added since: off
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const profile::ScopedSpan span(traced ? trace_labels_[i].c_str() : nullptr, "forward");
    h = layers[i].second->forward(h);
  }
  return h;
}

Tensor Sequential::backward_impl(const Tensor& dy) {
  Tensor g = dy;
  const auto& layers = children();
  const bool traced = trace_labels_.size() == layers.size();  // a child added since: off
  for (std::size_t i = layers.size(); i-- > 0;) {
    const profile::ScopedSpan span(traced ? trace_labels_[i].c_str() : nullptr, "backward");
    g = layers[i].second->backward(g);
  }
  return g;
}

}  // namespace syncbn::nn
