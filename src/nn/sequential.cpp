#include "syncbn/nn/sequential.h"

namespace syncbn::nn {

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor h = x;
  for (const auto& [name, child] : children()) h = child->forward(h);
  return h;
}

Tensor Sequential::backward_impl(const Tensor& dy) {
  Tensor g = dy;
  const auto& layers = children();
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) g = it->second->backward(g);
  return g;
}

}  // namespace syncbn::nn
