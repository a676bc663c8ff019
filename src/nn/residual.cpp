#include "syncbn/nn/residual.h"

#include "ops/elementwise.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/conv2d.h"
#include "syncbn/nn/sequential.h"
#include "syncbn/random.h"

namespace syncbn::nn {

Residual::Residual(int64_t in_channels, int64_t out_channels, int64_t stride,
                   const NormFactory& make_norm, uint64_t seed) {
  ModulePtr bn1 = make_norm(out_channels);
  const bool has_norm = bn1 != nullptr;
  auto conv = [&](int64_t in, int64_t out, int64_t kernel, int64_t s, uint64_t stream) {
    // A bias before a norm layer is redundant (the norm's shift absorbs it), as in torchvision.
    return std::make_shared<Conv2d>(
        Conv2dOptions(in, out, kernel).stride(s).padding(kernel / 2).bias(!has_norm),
        derive_seed(seed, stream));
  };
  main_path_.push_back(register_module("conv1", conv(in_channels, out_channels, 3, stride, 1)));
  if (has_norm) main_path_.push_back(register_module("bn1", bn1));
  main_path_.push_back(register_module("relu", std::make_shared<ReLU>()));
  main_path_.push_back(register_module("conv2", conv(out_channels, out_channels, 3, 1, 2)));
  if (has_norm) main_path_.push_back(register_module("bn2", make_norm(out_channels)));
  if (stride != 1 || in_channels != out_channels) {
    auto downsample = std::make_shared<Sequential>();
    downsample->add(conv(in_channels, out_channels, 1, stride, 3));
    if (has_norm) downsample->add(make_norm(out_channels));
    downsample_ = register_module("downsample", downsample);
  }
  // Not the "relu" child: each ReLU keeps the mask of its own forward for backward.
  final_relu_ = std::make_shared<ReLU>();
}

Tensor Residual::forward_impl(const Tensor& x) {
  Tensor h = x;
  for (auto& layer : main_path_) h = layer->forward(h);
  Tensor shortcut = downsample_ ? downsample_->forward(x) : x;
  return final_relu_->forward(ops::add(h, shortcut));
}

Tensor Residual::backward_impl(const Tensor& dy) {
  // d(main + shortcut) flows unchanged into both branches; dx sums the two paths.
  Tensor dsum = final_relu_->backward(dy);
  Tensor g = dsum;
  for (auto it = main_path_.rbegin(); it != main_path_.rend(); ++it) g = (*it)->backward(g);
  Tensor dx_shortcut = downsample_ ? downsample_->backward(dsum) : dsum;
  return ops::add(g, dx_shortcut);
}

}  // namespace syncbn::nn
