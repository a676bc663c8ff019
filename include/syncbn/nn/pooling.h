#pragma once
// Pooling over NCHW input: MaxPool2d, AvgPool2d (torch.nn, ceil_mode=False, square windows),
// and GlobalAvgPool2d (torch.nn.AdaptiveAvgPool2d(1) followed by flatten).
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class MaxPool2d : public Module {
 public:
  // stride = -1 means stride = kernel (PyTorch's default). padding <= kernel / 2.
  explicit MaxPool2d(int64_t kernel, int64_t stride = -1, int64_t padding = 0);

  std::string type_name() const override { return "MaxPool2d"; }
  // "kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False"
  std::string describe() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int64_t kernel_, stride_, padding_;
  Shape input_shape_;
  Tensor indices_;  // int32 position of each output's maximum within its plane
};

// The mean over each window; padding counts as zeros in the mean (count_include_pad=True).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = -1, int64_t padding = 0);

  std::string type_name() const override { return "AvgPool2d"; }
  std::string describe() const override;  // "kernel_size=2, stride=2, padding=0"

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  int64_t kernel_, stride_, padding_;
  Shape input_shape_;
};

// (N, C, H, W) -> (N, C), the mean over H * W: PyTorch's AdaptiveAvgPool2d(1) followed by
// flatten(1), as the head of a ResNet.
class GlobalAvgPool2d : public Module {
 public:
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string describe() const override { return "output_size=1"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Shape input_shape_;
};

}  // namespace syncbn::nn
