#include "ops/conv.h"

#include "cpu/blas.h"
#include "cpu/conv.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA_KERNELS)
#include "cuda/blas.h"
#include "cuda/conv.h"
#endif

namespace syncbn::ops {

namespace {

struct Geometry {
  int64_t batch, channels, height, width;
  int64_t out_channels, kernel, out_height, out_width;
  int64_t column_rows() const { return channels * kernel * kernel; }
  int64_t column_cols() const { return batch * out_height * out_width; }
};

Geometry geometry(const Shape& input, const Tensor& weight, int64_t stride, int64_t padding) {
  SYNCBN_CHECK(input.size() == 4, "Conv2d: expected input (N, C, H, W), got ", shape_str(input));
  SYNCBN_CHECK(weight.ndim() == 4 && weight.size(2) == weight.size(3),
               "Conv2d: expected a square weight (O, C, K, K), got ", shape_str(weight.shape()));
  SYNCBN_CHECK(input[1] == weight.size(1), "Conv2d: input ", shape_str(input), " has ", input[1],
               " channels, the layer expects ", weight.size(1));
  Geometry g{input[0], input[1], input[2], input[3], weight.size(0), weight.size(2), 0, 0};
  g.out_height = conv_output_size(g.height, g.kernel, stride, padding);
  g.out_width = conv_output_size(g.width, g.kernel, stride, padding);
  SYNCBN_CHECK(g.out_height > 0 && g.out_width > 0, "Conv2d: input ", shape_str(input),
               " is smaller than the kernel ", g.kernel, "x", g.kernel, " with padding ", padding);
  return g;
}

// A (rows, cols) tensor over `buffer`, reallocated only when it is too small or elsewhere.
Tensor workspace_matrix(Tensor& buffer, int64_t rows, int64_t cols, Device device) {
  const int64_t needed = rows * cols;
  if (!buffer.defined() || buffer.numel() < needed || buffer.device() != device) {
    buffer = Tensor::empty({needed}, device);
  }
  return buffer.view({rows, cols});
}

}  // namespace

int64_t conv_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding) {
  SYNCBN_CHECK(kernel > 0 && stride > 0 && padding >= 0, "invalid window: kernel ", kernel,
               ", stride ", stride, ", padding ", padding);
  const int64_t span = input + 2 * padding - kernel;
  return span < 0 ? 0 : span / stride + 1;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t padding, Conv2dWorkspace& workspace) {
  const Geometry g = geometry(x.shape(), weight, stride, padding);
  const Device device = detail::common_device("Conv2d", {&x, &weight, &bias});
  if (bias.defined()) {
    SYNCBN_CHECK(bias.numel() == g.out_channels, "Conv2d: bias has ", bias.numel(), " values for ",
                 g.out_channels, " channels");
  }
  Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_height, g.out_width}, device);
  const int64_t rows = g.column_rows(), cols = g.column_cols();
  Tensor columns = workspace_matrix(workspace.columns, rows, cols, device);
  Tensor output_columns = workspace_matrix(workspace.output_columns, g.out_channels, cols, device);
  if (cols == 0) return y;
  SYNCBN_DISPATCH(device, im2col, x.data(), g.batch, g.channels, g.height, g.width, g.kernel,
                  stride, padding, g.out_height, g.out_width, columns.data());
  // (O, C*K*K) x (C*K*K, N*P) -> (O, N*P)
  SYNCBN_DISPATCH(device, gemm, false, false, g.out_channels, cols, rows, 1.0f, weight.data(), rows,
                  columns.data(), cols, 0.0f, output_columns.data(), cols);
  SYNCBN_DISPATCH(device, cnhw_to_nchw_add_bias, output_columns.data(),
                  bias.defined() ? bias.data() : nullptr, g.batch, g.out_channels,
                  g.out_height * g.out_width, y.data());
  return y;
}

Tensor conv2d_backward(const Tensor& dy, const Tensor& weight, const Shape& input_shape,
                       int64_t stride, int64_t padding, Conv2dWorkspace& workspace,
                       Tensor& dweight, Tensor* dbias) {
  const Geometry g = geometry(input_shape, weight, stride, padding);
  const Shape output_shape{g.batch, g.out_channels, g.out_height, g.out_width};
  SYNCBN_CHECK(dy.shape() == output_shape, "Conv2d backward: gradient ", shape_str(dy.shape()),
               " does not match the output ", shape_str(output_shape));
  SYNCBN_CHECK(dweight.shape() == weight.shape(), "Conv2d backward: weight gradient ",
               shape_str(dweight.shape()), " does not match the weight ",
               shape_str(weight.shape()));
  const Device device = detail::common_device("Conv2d backward", {&dy, &weight, &dweight});
  if (dbias) detail::common_device("Conv2d backward", {&dy, dbias});
  const int64_t rows = g.column_rows(), cols = g.column_cols();
  SYNCBN_CHECK(workspace.columns.defined() && workspace.columns.numel() >= rows * cols,
               "Conv2d backward: no columns of a matching forward (call forward first)");
  Tensor dx = Tensor::empty(input_shape, device);
  if (cols == 0) return dx;
  const Tensor columns = workspace.columns.view({rows, cols});
  Tensor dy_columns = workspace_matrix(workspace.output_columns, g.out_channels, cols, device);
  Tensor grad_columns = workspace_matrix(workspace.grad_columns, rows, cols, device);
  // dy in (O, N*P) order, with the bias gradient summed in the same pass.
  SYNCBN_DISPATCH(device, nchw_to_cnhw_sum_channels, dy.data(), g.batch, g.out_channels,
                  g.out_height * g.out_width, dy_columns.data(), dbias ? dbias->data() : nullptr);
  // dweight (O, C*K*K) += dy (O, N*P) x columns^T (N*P, C*K*K)
  SYNCBN_DISPATCH(device, gemm, false, true, g.out_channels, rows, cols, 1.0f, dy_columns.data(),
                  cols, columns.data(), cols, 1.0f, dweight.data(), rows);
  // dcolumns (C*K*K, N*P) = weight^T (C*K*K, O) x dy (O, N*P)
  SYNCBN_DISPATCH(device, gemm, true, false, rows, cols, g.out_channels, 1.0f, weight.data(), rows,
                  dy_columns.data(), cols, 0.0f, grad_columns.data(), cols);
  SYNCBN_DISPATCH(device, col2im, grad_columns.data(), g.batch, g.channels, g.height, g.width,
                  g.kernel, stride, padding, g.out_height, g.out_width, dx.data());
  return dx;
}

}  // namespace syncbn::ops
