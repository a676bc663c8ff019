// The CUDA batch-norm kernels against the CPU kernels of the same name, on the same host data.
// Elementwise results agree within 1e-5 relative (they are computed operation for operation as
// on the CPU); sums are compared within 1e-5 relative plus 1e-6 of the sum of the magnitudes of
// their terms (the conditioning of a sum: the GPU adds in fp32 over groups of 16 values).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/batch_norm.h"
#include "cuda/batch_norm.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/device.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close;
using testing::expect_close_rel;
using testing::on_device;
using testing::random_values;

constexpr double kRtol = 1e-5;
constexpr double kEps = 1e-5;

// x viewed as (N, C, S), NCHW or channels-last (N, S, C).
struct Case {
  int64_t n, c, s;
  bool channels_last;

  int64_t numel() const { return n * c * s; }
  cpu::BatchNormShape shape() const { return {n, c, s, channels_last}; }
  std::size_t at(int64_t ni, int64_t ci, int64_t si) const {
    return static_cast<std::size_t>(channels_last ? (ni * s + si) * c + ci
                                                  : (ni * c + ci) * s + si);
  }
  std::string str() const {
    return "(N, C, S) = (" + std::to_string(n) + ", " + std::to_string(c) + ", " +
           std::to_string(s) + ")" + (channels_last ? " channels-last" : " NCHW");
  }
};

// Odd sizes, C not a power of two, N = 0, S = 1, a channel split over several blocks (large
// N * S), and S % 4 == 0 (vector loads) next to S % 4 != 0, in both layouts.
std::vector<Case> cases() {
  const std::vector<std::array<int64_t, 3>> shapes = {
      {3, 7, 13}, {0, 5, 9},  {64, 3, 1},    {2, 300, 1000}, {5, 16, 49}, {4, 12, 64},
      {1, 1, 2},  {9, 33, 4}, {2, 3, 40000}, {1000, 5, 3},   {3, 1100, 3}};
  std::vector<Case> all;
  for (const auto& shape : shapes) {
    for (bool channels_last : {false, true}) {
      all.push_back({shape[0], shape[1], shape[2], channels_last});
    }
  }
  return all;
}

// Raw doubles in device memory (the packed statistics buffers).
class DeviceDoubles {
 public:
  explicit DeviceDoubles(std::size_t size)
      : storage_(Device::cuda(0), std::max<std::size_t>(size, 1) * sizeof(double)), size_(size) {}
  double* data() { return static_cast<double*>(storage_.ptr); }
  void upload(const std::vector<double>& values) {
    ASSERT_EQ(values.size(), size_);
    if (size_) device_copy(storage_.ptr, Device::cuda(0), values.data(), Device::cpu(), bytes());
  }
  std::vector<double> download() const {
    std::vector<double> values(size_);
    if (size_) device_copy(values.data(), Device::cpu(), storage_.ptr, Device::cuda(0), bytes());
    return values;
  }

 private:
  std::size_t bytes() const { return size_ * sizeof(double); }
  Storage storage_;
  std::size_t size_;
};

// |actual - expected| <= rtol |expected| + 1e-6 * magnitude (the sum of |terms|) + 1e-12.
void expect_sums_close(const std::vector<double>& actual, const std::vector<double>& expected,
                       const std::vector<double>& magnitude, const std::string& what) {
  std::vector<double> atols(magnitude.size());
  for (std::size_t i = 0; i < atols.size(); ++i) atols[i] = 1e-6 * magnitude[i] + 1e-12;
  expect_close(actual, expected, kRtol, atols, what);
}

std::vector<double> widen(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

std::vector<float> per_channel(int64_t channels, uint64_t seed, float std, float mean) {
  return random_values(channels, seed, std, mean);
}

std::vector<float> positive_per_channel(int64_t channels, uint64_t seed) {
  std::vector<float> v = random_values(channels, seed, 0.3f, 1.0f);
  for (auto& value : v) value = std::fabs(value) + 0.2f;
  return v;
}

TEST(BatchNormCudaTest, StatsMatchCpuOnRandomShapes) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 100;
  for (const Case& k : cases()) {
    for (bool with_shift : {false, true}) {
      SCOPED_TRACE(k.str() + (with_shift ? " shift" : " no shift"));
      const std::vector<float> x = random_values(k.numel(), ++seed, 1.5f, 0.7f);
      const std::vector<float> shift = per_channel(k.c, ++seed, 0.2f, 0.6f);
      const float* host_shift = with_shift ? shift.data() : nullptr;

      std::vector<double> expected(2 * k.c + 1);
      cpu::batch_norm_stats(x.data(), host_shift, k.shape(), expected.data());

      const Tensor x_d = on_device(x);
      const Tensor shift_d = on_device(shift);
      DeviceDoubles stats(2 * k.c + 1);
      // Must be overwritten, the count n_r included, also for N = 0.
      stats.upload(std::vector<double>(2 * k.c + 1, 12345.0));
      cuda::batch_norm_stats(x_d.data(), with_shift ? shift_d.data() : nullptr, k.shape(),
                             stats.data());
      std::vector<double> actual = stats.download();
      EXPECT_EQ(actual[2 * k.c], static_cast<double>(k.n * k.s)) << "count";
      EXPECT_EQ(expected[2 * k.c], static_cast<double>(k.n * k.s)) << "CPU count";
      actual.pop_back();
      expected.pop_back();

      // Magnitudes: sum |x - K| for s1; s2's terms are all positive.
      std::vector<double> magnitude(2 * k.c, 0.0);
      for (int64_t n = 0; n < k.n; ++n)
        for (int64_t c = 0; c < k.c; ++c)
          for (int64_t s = 0; s < k.s; ++s) {
            const double d = x[k.at(n, c, s)] - (host_shift ? host_shift[c] : 0.0);
            magnitude[c] += std::fabs(d);
            magnitude[k.c + c] += d * d;
          }
      expect_sums_close(actual, expected, magnitude, "stats");
    }
  }
}

TEST(BatchNormCudaTest, StatsAreDeterministic) {
  SYNCBN_REQUIRE_CUDA();
  for (const Case& k : {Case{2, 3, 40000, false}, Case{2, 64, 3000, true}}) {
    const Tensor x = on_device(random_values(k.numel(), 7, 2.0f, 1.0f));
    DeviceDoubles first(2 * k.c + 1), second(2 * k.c + 1);
    cuda::batch_norm_stats(x.data(), nullptr, k.shape(), first.data());
    cuda::batch_norm_stats(x.data(), nullptr, k.shape(), second.data());
    const auto a = first.download(), b = second.download();
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)), 0) << k.str();
  }
}

// With mean 1e4 and std 1, plain fp32 sums of x and x^2 keep no digit of the variance; the
// shifted sums must give it within 1e-4 relative, whatever the shift.
TEST(BatchNormCudaTest, StatsKeepVarianceWhenMeanIsLarge) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 500;
  for (const Case& k : {Case{8, 3, 1000, false}, Case{8, 3, 1000, true}, Case{16, 5, 49, false},
                        Case{16, 8, 49, true}, Case{4, 2, 65536, false}}) {
    for (float shift_value : {0.0f, 1e4f + 0.5f, 1e4f - 3.0f}) {
      SCOPED_TRACE(k.str() + " shift " + std::to_string(shift_value));
      const std::vector<float> x = random_values(k.numel(), ++seed, 1.0f, 1e4f);
      const std::vector<float> shift(k.c, shift_value);
      const Tensor x_d = on_device(x);
      const Tensor shift_d = on_device(shift);
      DeviceDoubles packed(2 * k.c + 1);
      cuda::batch_norm_stats(x_d.data(), shift_d.data(), k.shape(), packed.data());
      const std::vector<double> stats = packed.download();
      const double count = static_cast<double>(k.n * k.s);
      for (int64_t c = 0; c < k.c; ++c) {
        double mean = 0.0, var = 0.0;  // two-pass reference in double
        for (int64_t n = 0; n < k.n; ++n)
          for (int64_t s = 0; s < k.s; ++s) mean += x[k.at(n, c, s)];
        mean /= count;
        for (int64_t n = 0; n < k.n; ++n)
          for (int64_t s = 0; s < k.s; ++s) var += std::pow(x[k.at(n, c, s)] - mean, 2);
        var /= count;
        const double shifted_mean = stats[c] / count;
        const double gpu_mean = shift_value + shifted_mean;
        const double gpu_var = stats[k.c + c] / count - shifted_mean * shifted_mean;
        EXPECT_NEAR(gpu_mean, mean, 1e-6 * std::fabs(mean)) << "channel " << c;
        EXPECT_NEAR(gpu_var, var, 1e-4 * var) << "channel " << c;
      }
    }
  }
}

TEST(BatchNormCudaTest, FinalizeAndRunningStatsMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t channels = 37;
  const double count = 150.0;
  uint64_t seed = 900;
  enum class Running { kNone, kMomentum, kCumulative };
  for (Running running : {Running::kNone, Running::kMomentum, Running::kCumulative}) {
    for (int shift_kind = 0; shift_kind < 3; ++shift_kind) {  // none, separate, = running_mean
      SCOPED_TRACE("running " + std::to_string(static_cast<int>(running)) + " shift " +
                   std::to_string(shift_kind));
      // Totals of a plausible batch: S1 = n (mean - K), S2 = n (var + (mean - K)^2).
      std::vector<double> packed(2 * channels + 1);
      const std::vector<float> means = random_values(channels, ++seed, 1.0f, 0.5f);
      const std::vector<float> vars = positive_per_channel(channels, ++seed);
      for (int64_t c = 0; c < channels; ++c) {
        packed[c] = count * means[c];
        packed[channels + c] = count * (vars[c] + means[c] * means[c]);
      }
      packed[2 * channels] = count;
      std::vector<float> shift = per_channel(channels, ++seed, 0.1f, 0.2f);
      std::vector<float> running_mean = per_channel(channels, ++seed, 0.5f, 0.0f);
      std::vector<float> running_var = positive_per_channel(channels, ++seed);
      std::vector<float> tracked = {3.0f};
      if (shift_kind == 2) shift = running_mean;

      const bool with_running = running != Running::kNone;
      const bool cumulative = running == Running::kCumulative;
      const double momentum = 0.1;

      DeviceDoubles packed_d(packed.size());
      packed_d.upload(packed);
      Tensor shift_d = on_device(shift);
      Tensor running_mean_d = on_device(running_mean);
      Tensor running_var_d = on_device(running_var);
      Tensor tracked_d = on_device(tracked);
      Tensor mean_d = Tensor::empty({channels}, Device::cuda(0));
      Tensor invstd_d = Tensor::empty({channels}, Device::cuda(0));
      const float* shift_device = shift_kind == 0   ? nullptr
                                  : shift_kind == 1 ? shift_d.data()
                                                    : running_mean_d.data();
      cuda::batch_norm_finalize(packed_d.data(), shift_device, channels, kEps, mean_d.data(),
                                invstd_d.data(), with_running ? running_mean_d.data() : nullptr,
                                with_running ? running_var_d.data() : nullptr,
                                with_running ? tracked_d.data() : nullptr, momentum, cumulative);

      std::vector<float> mean(channels), invstd(channels);
      const float* shift_host = shift_kind == 0   ? nullptr
                                : shift_kind == 1 ? shift.data()
                                                  : running_mean.data();
      cpu::batch_norm_finalize(packed.data(), shift_host, channels, kEps, mean.data(),
                               invstd.data(), with_running ? running_mean.data() : nullptr,
                               with_running ? running_var.data() : nullptr,
                               with_running ? tracked.data() : nullptr, momentum, cumulative);
      expect_close_rel(mean_d.to_vector(), mean, 1e-6, "mean");
      expect_close_rel(invstd_d.to_vector(), invstd, 1e-6, "invstd");
      expect_close_rel(running_mean_d.to_vector(), running_mean, 1e-6, "running_mean");
      expect_close_rel(running_var_d.to_vector(), running_var, 1e-6, "running_var");
      expect_close_rel(tracked_d.to_vector(), tracked, 0.0, "num_batches_tracked");
    }
  }
}

TEST(BatchNormCudaTest, InvstdMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  for (int64_t channels : {1, 7, 300, 1025}) {
    const std::vector<float> var = positive_per_channel(channels, 40 + channels);
    std::vector<float> expected(channels);
    cpu::batch_norm_invstd(var.data(), channels, kEps, expected.data());
    const Tensor var_d = on_device(var);
    Tensor invstd_d = Tensor::empty({channels}, Device::cuda(0));
    cuda::batch_norm_invstd(var_d.data(), channels, kEps, invstd_d.data());
    expect_close_rel(invstd_d.to_vector(), expected, 1e-6, "invstd C=" + std::to_string(channels));
  }
}

TEST(BatchNormCudaTest, ElemtMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 1300;
  for (const Case& k : cases()) {
    for (bool affine : {false, true}) {
      // misaligned: x and y start one float into their storage (scalar loads).
      for (bool misaligned : {false, true}) {
        SCOPED_TRACE(k.str() + (affine ? " affine" : "") + (misaligned ? " misaligned" : ""));
        const std::vector<float> x = random_values(k.numel(), ++seed, 2.0f, 0.5f);
        const std::vector<float> mean = per_channel(k.c, ++seed, 0.3f, 0.5f);
        const std::vector<float> invstd = positive_per_channel(k.c, ++seed);
        const std::vector<float> weight = per_channel(k.c, ++seed, 0.5f, 1.0f);
        const std::vector<float> bias = per_channel(k.c, ++seed, 0.5f, 0.0f);
        std::vector<float> expected(x.size());
        cpu::batch_norm_elemt(x.data(), mean.data(), invstd.data(),
                              affine ? weight.data() : nullptr, affine ? bias.data() : nullptr,
                              k.shape(), expected.data());

        const int64_t offset = misaligned ? 1 : 0;
        std::vector<float> padded(static_cast<std::size_t>(k.numel() + offset), 0.0f);
        std::copy(x.begin(), x.end(), padded.begin() + offset);
        const Tensor x_storage = on_device(padded);
        const Tensor x_d = x_storage.view({k.numel()}, offset);
        Tensor y_storage = Tensor::zeros({k.numel() + offset}, Device::cuda(0));
        Tensor y_d = y_storage.view({k.numel()}, offset);
        const Tensor mean_d = on_device(mean), invstd_d = on_device(invstd);
        const Tensor weight_d = on_device(weight), bias_d = on_device(bias);
        cuda::batch_norm_elemt(x_d.data(), mean_d.data(), invstd_d.data(),
                               affine ? weight_d.data() : nullptr, affine ? bias_d.data() : nullptr,
                               k.shape(), y_d.data());
        expect_close_rel(y_d.to_vector(), expected, kRtol, "y");
      }
    }
  }
}

TEST(BatchNormCudaTest, BackwardReduceMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 2100;
  for (const Case& k : cases()) {
    for (int variant = 0; variant < 3; ++variant) {  // all outputs; no sums; sums only
      SCOPED_TRACE(k.str() + " variant " + std::to_string(variant));
      const bool with_sums = variant != 1;
      const bool with_grads = variant != 2;
      const std::vector<float> x = random_values(k.numel(), ++seed, 1.5f, 0.4f);
      const std::vector<float> dy = random_values(k.numel(), ++seed, 1.0f, 0.1f);
      const std::vector<float> mean = per_channel(k.c, ++seed, 0.2f, 0.4f);
      const std::vector<float> invstd = positive_per_channel(k.c, ++seed);
      std::vector<float> grad_weight = per_channel(k.c, ++seed, 1.0f, 0.0f);
      std::vector<float> grad_bias = per_channel(k.c, ++seed, 1.0f, 0.0f);

      Tensor grad_weight_d = on_device(grad_weight), grad_bias_d = on_device(grad_bias);
      const Tensor x_d = on_device(x), dy_d = on_device(dy);
      const Tensor mean_d = on_device(mean), invstd_d = on_device(invstd);
      DeviceDoubles sums_d(2 * k.c);
      sums_d.upload(std::vector<double>(2 * k.c, 777.0));
      cuda::batch_norm_backward_reduce(dy_d.data(), x_d.data(), mean_d.data(), invstd_d.data(),
                                       k.shape(), with_sums ? sums_d.data() : nullptr,
                                       with_grads ? grad_weight_d.data() : nullptr,
                                       with_grads ? grad_bias_d.data() : nullptr);

      std::vector<double> sums(2 * k.c, 777.0);
      const std::vector<float> grad_weight_before = grad_weight, grad_bias_before = grad_bias;
      cpu::batch_norm_backward_reduce(dy.data(), x.data(), mean.data(), invstd.data(), k.shape(),
                                      with_sums ? sums.data() : nullptr,
                                      with_grads ? grad_weight.data() : nullptr,
                                      with_grads ? grad_bias.data() : nullptr);

      std::vector<double> magnitude(2 * k.c, 0.0);
      for (int64_t n = 0; n < k.n; ++n)
        for (int64_t c = 0; c < k.c; ++c)
          for (int64_t s = 0; s < k.s; ++s) {
            const std::size_t i = k.at(n, c, s);
            magnitude[c] += std::fabs(dy[i]);
            magnitude[k.c + c] += std::fabs(dy[i] * (x[i] - mean[c]) * invstd[c]);
          }
      expect_sums_close(sums_d.download(), sums, magnitude, "sums");
      // The gradients: before + float(sum), so the sum's tolerance plus one float rounding.
      std::vector<double> weight_magnitude(k.c), bias_magnitude(k.c);
      for (int64_t c = 0; c < k.c; ++c) {
        weight_magnitude[c] = magnitude[k.c + c] + std::fabs(grad_weight_before[c]);
        bias_magnitude[c] = magnitude[c] + std::fabs(grad_bias_before[c]);
      }
      expect_sums_close(widen(grad_weight_d.to_vector()), widen(grad_weight), weight_magnitude,
                        "grad_weight");
      expect_sums_close(widen(grad_bias_d.to_vector()), widen(grad_bias), bias_magnitude,
                        "grad_bias");
    }
  }
}

TEST(BatchNormCudaTest, BackwardElemtMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 3100;
  for (const Case& k : cases()) {
    for (int variant = 0; variant < 3; ++variant) {  // training; no weight; constant statistics
      SCOPED_TRACE(k.str() + " variant " + std::to_string(variant));
      const bool with_weight = variant != 1;
      const bool with_sums = variant != 2;
      const std::vector<float> x = random_values(k.numel(), ++seed, 1.5f, 0.4f);
      const std::vector<float> dy = random_values(k.numel(), ++seed, 1.0f, 0.1f);
      const std::vector<float> mean = per_channel(k.c, ++seed, 0.2f, 0.4f);
      const std::vector<float> invstd = positive_per_channel(k.c, ++seed);
      const std::vector<float> weight = per_channel(k.c, ++seed, 0.5f, 1.0f);
      const double count = static_cast<double>(std::max<int64_t>(k.n * k.s, 1)) * 3.0;
      std::vector<double> sums(2 * k.c + 1);  // [sum_dy, sum_dy_xhat, n]
      {
        const std::vector<float> r = random_values(2 * k.c, ++seed, 1.0f, 0.0f);
        for (int64_t i = 0; i < 2 * k.c; ++i) sums[i] = std::sqrt(count) * r[i];
      }
      sums[2 * k.c] = count;
      std::vector<float> expected(x.size());
      cpu::batch_norm_backward_elemt(dy.data(), x.data(), mean.data(), invstd.data(),
                                     with_weight ? weight.data() : nullptr,
                                     with_sums ? sums.data() : nullptr, k.shape(), expected.data());

      const Tensor x_d = on_device(x), dy_d = on_device(dy);
      const Tensor mean_d = on_device(mean), invstd_d = on_device(invstd);
      const Tensor weight_d = on_device(weight);
      DeviceDoubles sums_d(2 * k.c + 1);
      sums_d.upload(sums);
      Tensor dx_d = Tensor::zeros({k.numel()}, Device::cuda(0));
      cuda::batch_norm_backward_elemt(dy_d.data(), x_d.data(), mean_d.data(), invstd_d.data(),
                                      with_weight ? weight_d.data() : nullptr,
                                      with_sums ? sums_d.data() : nullptr, k.shape(), dx_d.data());
      expect_close_rel(dx_d.to_vector(), expected, kRtol, "dx");
    }
  }
}

// Forward and backward of one layer through the kernels, as the module runs them, on the GPU and
// on the CPU: y, dx and the parameter gradients agree.
TEST(BatchNormCudaTest, TrainingStepMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  uint64_t seed = 4100;
  for (const Case& k : {Case{6, 10, 49, false}, Case{6, 12, 49, true}, Case{4, 64, 64, false},
                        Case{4, 64, 64, true}, Case{32, 7, 1, false}}) {
    SCOPED_TRACE(k.str());
    const std::vector<float> x = random_values(k.numel(), ++seed, 3.0f, 5.0f);
    const std::vector<float> dy = random_values(k.numel(), ++seed, 1.0f, 0.0f);
    const std::vector<float> weight = per_channel(k.c, ++seed, 0.5f, 1.0f);
    const std::vector<float> bias = per_channel(k.c, ++seed, 0.5f, 0.0f);
    const std::vector<float> running_mean = per_channel(k.c, ++seed, 0.5f, 4.0f);
    const double count = static_cast<double>(k.n * k.s);

    // CPU.
    std::vector<double> packed(2 * k.c + 1);
    std::vector<float> mean(k.c), invstd(k.c), y(x.size()), dx(x.size());
    std::vector<float> grad_weight(k.c, 0.0f), grad_bias(k.c, 0.0f);
    cpu::batch_norm_stats(x.data(), running_mean.data(), k.shape(), packed.data());
    EXPECT_EQ(packed[2 * k.c], count);
    cpu::batch_norm_finalize(packed.data(), running_mean.data(), k.c, kEps, mean.data(),
                             invstd.data(), nullptr, nullptr, nullptr, 0.1, false);
    cpu::batch_norm_elemt(x.data(), mean.data(), invstd.data(), weight.data(), bias.data(),
                          k.shape(), y.data());
    // The backward sums go over s1 and s2; the count n stays in the last slot.
    cpu::batch_norm_backward_reduce(dy.data(), x.data(), mean.data(), invstd.data(), k.shape(),
                                    packed.data(), grad_weight.data(), grad_bias.data());
    cpu::batch_norm_backward_elemt(dy.data(), x.data(), mean.data(), invstd.data(), weight.data(),
                                   packed.data(), k.shape(), dx.data());

    // GPU.
    const Tensor x_d = on_device(x), dy_d = on_device(dy);
    const Tensor weight_d = on_device(weight), bias_d = on_device(bias);
    const Tensor shift_d = on_device(running_mean);
    Tensor mean_d = Tensor::empty({k.c}, Device::cuda(0));
    Tensor invstd_d = Tensor::empty({k.c}, Device::cuda(0));
    Tensor y_d = Tensor::empty({k.numel()}, Device::cuda(0));
    Tensor dx_d = Tensor::empty({k.numel()}, Device::cuda(0));
    Tensor grad_weight_d = Tensor::zeros({k.c}, Device::cuda(0));
    Tensor grad_bias_d = Tensor::zeros({k.c}, Device::cuda(0));
    DeviceDoubles packed_d(2 * k.c + 1);
    cuda::batch_norm_stats(x_d.data(), shift_d.data(), k.shape(), packed_d.data());
    EXPECT_EQ(packed_d.download()[2 * k.c], count);  // the kernel writes n_r
    cuda::batch_norm_finalize(packed_d.data(), shift_d.data(), k.c, kEps, mean_d.data(),
                              invstd_d.data(), nullptr, nullptr, nullptr, 0.1, false);
    cuda::batch_norm_elemt(x_d.data(), mean_d.data(), invstd_d.data(), weight_d.data(),
                           bias_d.data(), k.shape(), y_d.data());
    cuda::batch_norm_backward_reduce(dy_d.data(), x_d.data(), mean_d.data(), invstd_d.data(),
                                     k.shape(), packed_d.data(), grad_weight_d.data(),
                                     grad_bias_d.data());
    cuda::batch_norm_backward_elemt(dy_d.data(), x_d.data(), mean_d.data(), invstd_d.data(),
                                    weight_d.data(), packed_d.data(), k.shape(), dx_d.data());

    expect_close_rel(mean_d.to_vector(), mean, kRtol, "mean");
    expect_close_rel(invstd_d.to_vector(), invstd, kRtol, "invstd");
    // y = b (x - mean) + c: a last-bit difference of the float mean (here |mean| ~ 5) moves
    // every y by b ulp(mean), so y is compared relative to 5% of its largest value at least.
    expect_close_rel(y_d.to_vector(), y, kRtol, "y", 0.05);
    expect_close_rel(dx_d.to_vector(), dx, kRtol, "dx");
    // The parameter gradients are sums: compared as sums (see expect_sums_close).
    std::vector<double> weight_magnitude(k.c, 0.0), bias_magnitude(k.c, 0.0);
    for (int64_t n = 0; n < k.n; ++n)
      for (int64_t c = 0; c < k.c; ++c)
        for (int64_t s = 0; s < k.s; ++s) {
          const std::size_t i = k.at(n, c, s);
          bias_magnitude[c] += std::fabs(dy[i]);
          weight_magnitude[c] += std::fabs(dy[i] * (x[i] - mean[c]) * invstd[c]);
        }
    expect_sums_close(widen(grad_weight_d.to_vector()), widen(grad_weight), weight_magnitude,
                      "grad_weight");
    expect_sums_close(widen(grad_bias_d.to_vector()), widen(grad_bias), bias_magnitude,
                      "grad_bias");
  }
}

TEST(BatchNormCudaTest, EmptyBatchGivesZeroSumsAndKeepsGradients) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t channels = 5;
  const Tensor x = Tensor::empty({0}, Device::cuda(0));
  const Tensor mean = on_device(std::vector<float>(channels, 0.5f));
  const Tensor invstd = on_device(std::vector<float>(channels, 2.0f));
  const std::vector<float> before = {1, 2, 3, 4, 5};
  Tensor grad_weight = on_device(before), grad_bias = on_device(before);
  DeviceDoubles sums(2 * channels + 1);
  sums.upload(std::vector<double>(2 * channels + 1, 9.0));
  const cpu::BatchNormShape nchw{.batch = 0, .channels = channels, .spatial = 9};
  const cpu::BatchNormShape nhwc{
      .batch = 0, .channels = channels, .spatial = 9, .channels_last = true};
  cuda::batch_norm_backward_reduce(x.data(), x.data(), mean.data(), invstd.data(), nchw,
                                   sums.data(), grad_weight.data(), grad_bias.data());
  std::vector<double> expected(2 * channels, 0.0);
  expected.push_back(9.0);  // the count slot is not backward_reduce's
  EXPECT_EQ(sums.download(), expected);
  EXPECT_EQ(grad_weight.to_vector(), before);
  EXPECT_EQ(grad_bias.to_vector(), before);
  Tensor y = Tensor::empty({0}, Device::cuda(0));
  cuda::batch_norm_elemt(x.data(), mean.data(), invstd.data(), nullptr, nullptr, nhwc, y.data());
  cuda::batch_norm_backward_elemt(x.data(), x.data(), mean.data(), invstd.data(), nullptr,
                                  sums.data(), nhwc, y.data());
  EXPECT_EQ(sums.download(), expected);  // and no error queued
}

}  // namespace
}  // namespace syncbn
