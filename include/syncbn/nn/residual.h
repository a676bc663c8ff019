#pragma once
// Residual: the ResNet basic block (He et al. 2016),
//   y = relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)),
// with shortcut = identity, or a 1x1 strided convolution + norm ("downsample") when the
// stride or the channel count changes. Child names follow torchvision's BasicBlock
// (conv1, bn1, conv2, bn2, downsample.0, downsample.1).
#include <functional>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

// Makes the normalisation layer for `channels` channels (BatchNorm2d, GroupNorm, ...), or
// nullptr for none.
using NormFactory = std::function<ModulePtr(int64_t channels)>;

class Residual : public Module {
 public:
  Residual(int64_t in_channels, int64_t out_channels, int64_t stride, const NormFactory& make_norm,
           uint64_t seed = 0);
  std::string type_name() const override { return "BasicBlock"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  // The block's path: conv1 [bn1] relu conv2 [bn2], in order, as named children.
  std::vector<ModulePtr> main_path_;
  ModulePtr downsample_;  // nullptr for the identity shortcut
  ModulePtr final_relu_;
};

}  // namespace syncbn::nn
