#pragma once
// The data movement around a convolution computed as a GEMM (im2col, as in Caffe).
//
// Layout of the column matrix, for a batch of N images (C, H, W), a K x K kernel with stride
// s and zero padding p, output Ho x Wo, P = Ho * Wo:
//   columns[(c * K + kh) * K + kw][n * P + oh * Wo + ow] = x[n][c][oh * s - p + kh][ow * s - p + kw]
// (0 where the index falls into the padding). With the whole batch in one (C*K*K, N*P) matrix,
// the forward is one GEMM, weight (O, C*K*K) x columns -> (O, N*P), whose result is the output
// in (O, N, P) order; the two transposes below move between that order and NCHW.
#include <cstdint>

namespace syncbn::cpu {

// Fills `columns` (C*K*K, N*Ho*Wo) from x (N, C, H, W) as laid out above.
void im2col(const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
            int64_t out_width, float* columns);

// The adjoint of im2col: dx[n][c][ih][iw] = sum of the columns entries that im2col copied from
// x[n][c][ih][iw]. Overwrites dx (N, C, H, W).
void col2im(const float* columns, int64_t batch, int64_t channels, int64_t height, int64_t width,
            int64_t kernel, int64_t stride, int64_t padding, int64_t out_height,
            int64_t out_width, float* dx);

// y[n][c][i] = src[c][n * plane + i] + bias[c]; bias may be null (then no bias is added).
void cnhw_to_nchw_add_bias(const float* src, const float* bias, int64_t batch, int64_t channels,
                           int64_t plane, float* y);

// dst[c][n * plane + i] = src[n][c][i]; when channel_sum is not null it also accumulates
// channel_sum[c] += sum over n, i of src[n][c][i] (the bias gradient, in the same pass).
void nchw_to_cnhw_sum_channels(const float* src, int64_t batch, int64_t channels, int64_t plane,
                               float* dst, float* channel_sum);

}  // namespace syncbn::cpu
