#include "ops/conv.h"

#include "cpu/conv.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/conv.h"
#endif

namespace syncbn::ops {

namespace {

cpu::Conv2dShape conv_shape(const Shape& input, const Tensor& weight, int64_t stride,
                            int64_t padding) {
  SYNCBN_CHECK(input.size() == 4, "Conv2d: expected input (N, C, H, W), got ", shape_str(input));
  SYNCBN_CHECK(weight.ndim() == 4 && weight.size(2) == weight.size(3),
               "Conv2d: expected a square weight (O, C, K, K), got ", shape_str(weight.shape()));
  SYNCBN_CHECK(input[1] == weight.size(1), "Conv2d: input ", shape_str(input), " has ", input[1],
               " channels, the layer expects ", weight.size(1));
  cpu::Conv2dShape s{input[0],       input[1], input[2], input[3], weight.size(0),
                     weight.size(2), stride,   padding,  0,        0};
  s.out_height = conv_output_size(s.height, s.kernel, stride, padding);
  s.out_width = conv_output_size(s.width, s.kernel, stride, padding);
  SYNCBN_CHECK(s.out_height > 0 && s.out_width > 0, "Conv2d: input ", shape_str(input),
               " is smaller than the kernel ", s.kernel, "x", s.kernel, " with padding ", padding);
  return s;
}

// The workspace the kernels need now, reallocated only when too small or elsewhere.
float* ensure_workspace(Tensor& workspace, const cpu::Conv2dShape& shape, Device device) {
  int64_t floats = 0;
  SYNCBN_DISPATCH(device, conv2d_workspace_size, shape, &floats);
  if (!workspace.defined() || workspace.numel() < floats || workspace.device() != device) {
    workspace = Tensor::empty({floats}, device);
  }
  return workspace.data();
}

}  // namespace

int64_t conv_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding) {
  SYNCBN_CHECK(kernel > 0 && stride > 0 && padding >= 0, "invalid window: kernel ", kernel,
               ", stride ", stride, ", padding ", padding);
  const int64_t span = input + 2 * padding - kernel;
  return span < 0 ? 0 : span / stride + 1;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t padding, Tensor& workspace) {
  const cpu::Conv2dShape s = conv_shape(x.shape(), weight, stride, padding);
  const Device device = detail::common_device("Conv2d", {&x, &weight, &bias});
  if (bias.defined()) {
    SYNCBN_CHECK(bias.numel() == s.out_channels, "Conv2d: bias has ", bias.numel(), " values for ",
                 s.out_channels, " channels");
  }
  Tensor y = Tensor::empty({s.batch, s.out_channels, s.out_height, s.out_width}, device);
  if (s.batch == 0) return y;
  float* scratch = ensure_workspace(workspace, s, device);
  SYNCBN_DISPATCH(device, conv2d_forward, x.data(), weight.data(),
                  bias.defined() ? bias.data() : nullptr, s, scratch, y.data());
  return y;
}

Tensor conv2d_backward(const Tensor& x, const Tensor& dy, const Tensor& weight, int64_t stride,
                       int64_t padding, Tensor& workspace, Tensor& dweight, Tensor* dbias) {
  const cpu::Conv2dShape s = conv_shape(x.shape(), weight, stride, padding);
  const Shape output_shape{s.batch, s.out_channels, s.out_height, s.out_width};
  SYNCBN_CHECK(dy.shape() == output_shape, "Conv2d backward: gradient ", shape_str(dy.shape()),
               " does not match the output ", shape_str(output_shape));
  SYNCBN_CHECK(dweight.shape() == weight.shape(), "Conv2d backward: weight gradient ",
               shape_str(dweight.shape()), " does not match the weight ",
               shape_str(weight.shape()));
  if (dbias) {
    SYNCBN_CHECK(dbias->numel() == s.out_channels, "Conv2d backward: bias gradient of ",
                 dbias->numel(), " values for ", s.out_channels, " channels");
  }
  const Device device = detail::common_device("Conv2d backward", {&x, &dy, &weight, &dweight});
  if (dbias) detail::common_device("Conv2d backward", {&dy, dbias});
  Tensor dx = Tensor::empty(x.shape(), device);
  if (s.batch == 0) return dx;
  float* scratch = ensure_workspace(workspace, s, device);
  SYNCBN_DISPATCH(device, conv2d_backward, x.data(), weight.data(), dy.data(), s, scratch,
                  dx.data(), dweight.data(), dbias ? dbias->data() : nullptr);
  return dx;
}

}  // namespace syncbn::ops
