#pragma once
// Conv2d: 2-D convolution over NCHW input (torch.nn.Conv2d with square kernel, stride and
// padding, zero padding, no dilation or groups).
#include <cstdint>
#include <string>

#include "syncbn/arg.h"
#include "syncbn/nn/module.h"

namespace syncbn::nn {

class Conv2dOptions {
 public:
  Conv2dOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}

  SYNCBN_ARG(int64_t, in_channels);
  SYNCBN_ARG(int64_t, out_channels);
  SYNCBN_ARG(int64_t, kernel_size);
  SYNCBN_ARG(int64_t, stride) = 1;
  SYNCBN_ARG(int64_t, padding) = 0;
  SYNCBN_ARG(bool, bias) = true;
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
