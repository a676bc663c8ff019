#pragma once
// Conv2d: 2-D convolution over NCHW input (torch.nn.Conv2d with square kernel, stride and
// padding, zero padding, no dilation or groups).
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"

namespace syncbn::nn {

class Conv2dOptions {
 public:
  Conv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}

  Conv2dOptions& stride(int64_t value) {
    stride_ = value;
    return *this;
  }
  Conv2dOptions& padding(int64_t value) {
    padding_ = value;
    return *this;
  }
  Conv2dOptions& bias(bool value) {
    bias_ = value;
    return *this;
  }

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  int64_t kernel_size() const { return kernel_size_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }
  bool bias() const { return bias_; }

 private:
  int64_t in_channels_, out_channels_, kernel_size_;
  int64_t stride_ = 1;
  int64_t padding_ = 0;
  bool bias_ = true;
};

class Conv2d : public Module {
 public:
  // weight (out, in, k, k) and bias (out) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in*k*k,
  // from Generator(seed): the distribution of PyTorch's default initialisation.
  explicit Conv2d(const Conv2dOptions& options, uint64_t seed = 0);

  std::string type_name() const override { return "Conv2d"; }
  // "1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)" (+ ", bias=False")
  std::string describe() const override;

  const Conv2dOptions& options() const { return options_; }
  Parameter& weight() { return *weight_; }
  // Null without a bias.
  Parameter* bias() { return bias_.get(); }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  Conv2dOptions options_;
  ParameterPtr weight_, bias_;
  Tensor input_;      // the last forward's input, for the gradients
  Tensor workspace_;  // scratch for the im2col + GEMM kernels, kept between calls
};

}  // namespace syncbn::nn
