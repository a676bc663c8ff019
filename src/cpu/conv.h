#pragma once
// 2-D convolution (cross-correlation, as torch.nn.Conv2d) on NCHW data, as im2col + GEMM.
//
// Column layout, for a group of B images (C, H, W), a K x K kernel with stride s and zero
// padding p, output Ho x Wo, P = Ho * Wo:
//   columns[(c * K + kh) * K + kw][b * P + oh * Wo + ow] = x[b][c][oh*s - p + kh][ow*s - p + kw]
// (0 where the index falls into the padding). Then the output of the group, in (O, B, P) order,
// is one GEMM: weight (O, C*K*K) x columns (C*K*K, B*P).
//
// conv2d_forward/backward run the batch in groups of B samples (B * P >= ~256 columns, enough
// for an efficient GEMM), one group per thread at a time, so each group's columns stay in that
// core's cache: the columns of the whole batch (C*K*K x N*P floats, 14 MB for a 32 -> 64
// channel 3x3 layer on 64 images of 14x14) are never written to memory. With B = 1 the GEMM
// writes the output in place (O, P is NCHW for one sample).
#include <cstdint>

namespace syncbn::cpu {

struct Conv2dShape {
  int64_t batch, in_channels, height, width;
  int64_t out_channels, kernel, stride, padding;
  int64_t out_height, out_width;
};

// *floats = the workspace that conv2d_forward and conv2d_backward need when called now (it
// depends on num_threads()).
void conv2d_workspace_size(const Conv2dShape& shape, int64_t* floats);

// y (N, O, Ho, Wo) = conv(x (N, C, H, W), weight (O, C, K, K)) + bias (O; may be null).
void conv2d_forward(const float* x, const float* weight, const float* bias,
                    const Conv2dShape& shape, float* workspace, float* y);

// From the forward input x and dy (N, O, Ho, Wo):
//   dweight += sum_n dy_n (O, P) x columns_n^T (P, C*K*K)      (accumulates)
//   dbias   += sum of dy over n, oh, ow per channel           (accumulates; skipped if null)
//   dx       = col2im(weight^T (C*K*K, O) x dy_n (O, P))      (overwritten)
void conv2d_backward(const float* x, const float* weight, const float* dy, const Conv2dShape& shape,
                     float* workspace, float* dx, float* dweight, float* dbias);

// The pieces, for `batch` images as one group (layout above).
// Fills columns (C*K*K, batch*P) from x (batch, C, H, W).
void im2col(const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height, int64_t out_width,
            float* columns);
// The adjoint of im2col: dx[n][c][ih][iw] = sum of the columns entries that im2col copied from
// x[n][c][ih][iw]. Overwrites dx (batch, C, H, W).
void col2im(const float* columns, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height, int64_t out_width,
            float* dx);
// y[n][c][i] = src[c][n * plane + i] + bias[c]; bias may be null (then no bias is added).
void cnhw_to_nchw_add_bias(const float* src, const float* bias, int64_t batch, int64_t channels,
                           int64_t plane, float* y);
// dst[c][n * plane + i] = src[n][c][i]
void nchw_to_cnhw(const float* src, int64_t batch, int64_t channels, int64_t plane, float* dst);

}  // namespace syncbn::cpu
