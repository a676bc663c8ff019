#pragma once
// BatchNorm1d / BatchNorm2d with PyTorch semantics and state_dict names, and the shared
// implementation (BatchNorm) that SyncBatchNorm derives from (docs/DESIGN.md §3).
//
// Training: per-channel batch statistics over the n = N * prod(spatial) values of a channel,
//   mean = K + S1/n, var = S2/n - (S1/n)^2 (biased), invstd = 1/sqrt(var + eps),
//   y = weight * (x - mean) * invstd + bias,
// from shifted sums S1 = sum(x - K), S2 = sum((x - K)^2) in double with K = running_mean when
// statistics are tracked (else 0), and, when tracked,
//   running_mean = (1 - m) running_mean + m mean,  running_var = (1 - m) running_var + m var
//   n/(n-1)
// (m = momentum, or 1/num_batches_tracked when momentum is None).
// Evaluation: the running statistics when tracked, the batch statistics otherwise.
// Backward: dx = weight * invstd / n * (n * dy - sum_dy - xhat * sum_dy_xhat),
//   weight.grad += sum(dy * xhat), bias.grad += sum(dy).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "syncbn/arg.h"
#include "syncbn/device.h"
#include "syncbn/nn/module.h"
#include "syncbn/tensor.h"

namespace syncbn::nn {

// Chained options, as in the PyTorch C++ frontend: BatchNormOptions(64).eps(1e-3).momentum(0.01).
class BatchNormOptions {
 public:
  BatchNormOptions(int64_t num_features)  // NOLINT: implicit, as in PyTorch
      : num_features_(num_features) {}

  SYNCBN_ARG(int64_t, num_features);
  SYNCBN_ARG(double, eps) = 1e-5;
  // nullopt is PyTorch's momentum=None: a cumulative moving average.
  SYNCBN_ARG(std::optional<double>, momentum) = 0.1;
  SYNCBN_ARG(bool, affine) = true;
  SYNCBN_ARG(bool, track_running_stats) = true;
};

// The shared implementation of the batch norm layers (PyTorch's _BatchNorm). Input (N, C, *);
// an input flagged MemoryFormat::kChannelsLast is read as (N, *, C) and the output keeps the flag.
// Parameters "weight" (ones) and "bias" (zeros) when affine; buffers "running_mean" (zeros),
// "running_var" (ones) and "num_batches_tracked" (one float, 0) when tracking.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(const BatchNormOptions& options);

  const BatchNormOptions& options() const { return options_; }
  // "4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True"
  std::string describe() const override;

  // Null when not affine.
  ParameterPtr weight() const { return weight_; }
  ParameterPtr bias() const { return bias_; }
  // Handles sharing the buffers' storage; undefined when statistics are not tracked.
  Tensor running_mean() { return tracked_buffer("running_mean"); }
  Tensor running_var() { return tracked_buffer("running_var"); }
  Tensor num_batches_tracked() { return tracked_buffer("num_batches_tracked"); }

 protected:
  // Builds a batch norm that shares the Parameter objects and the buffer storage of `source`,
  // with its options and train/eval mode: how convert_sync_batchnorm swaps a BatchNorm for a
  // SyncBatchNorm without copying state.
  struct ShareState {};
  BatchNorm(const BatchNorm& source, ShareState);

  // Views of the packed statistics that the hooks reduce in place: size() doubles at data, in
  // the memory of `device` (the input's), one buffer reused by forward and backward.
  // Forward, 2C+1 values [s1(C), s2(C), n]: the shifted sums s1 = sum(x - K) and
  // s2 = sum((x - K)^2) of each channel, then the count n, so that one allreduce sums all three.
  struct ForwardStats {
    double* data;
    int64_t channels;
    Device device;

    int64_t size() const { return 2 * channels + 1; }
    double* s1() const { return data; }
    double* s2() const { return data + channels; }
    double* count() const { return data + 2 * channels; }
  };
  // Backward, 2C values [sum_dy(C), sum_dy_xhat(C)], written over s1 and s2: the forward's
  // total count n stays in the last slot, where the backward kernel reads it on the device.
  struct BackwardStats {
    double* data;
    int64_t channels;
    Device device;

    int64_t size() const { return 2 * channels; }
    double* sum_dy() const { return data; }
    double* sum_dy_xhat() const { return data + channels; }
  };

  // The collective hooks. A local batch norm does nothing; SyncBatchNorm allreduces (sum) over
  // its group. Called on every training step, also with an empty local batch (zeros), so that
  // every rank joins the collective. Afterwards the buffer must hold the group totals.
  // reduce_forward_stats returns whether it changed them. The count stays on the device: the
  // n <= 1 check needs the total only where the local count is <= 1 (then it is read back).
  virtual bool reduce_forward_stats(ForwardStats /*stats*/) { return false; }
  virtual void reduce_backward_stats(BackwardStats /*stats*/) {}

  // The dimensions a concrete class accepts (BatchNorm2d: 4-D); the base accepts (N, C, *).
  virtual void check_input_dim(const Tensor& x) const;

  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

  // The forward and backward pieces, for derived classes that arrange them differently.
  // True when this forward normalises with batch statistics (training, or not tracking).
  bool uses_batch_stats() const { return is_training() || !options_.track_running_stats(); }
  // Batch statistics of x into saved_mean_ / saved_invstd_: local shifted sums,
  // reduce_forward_stats, the count check, then finalize (with the running-statistics update
  // when training and tracking).
  void compute_batch_stats(const Tensor& x);
  // saved_mean_ / saved_invstd_ from the running statistics (evaluation).
  void load_running_stats();
  // Throws the "Expected more than 1 value per channel when training" error unless the total
  // count over the group is > 1: known on the host when the local count is > 1 or the
  // statistics were not reduced; else read from stats.count() (a device-to-host copy, made only
  // on a rank whose own batch has at most one value per channel).
  static void check_count(const Shape& local_shape, double local_count, bool reduced,
                          const ForwardStats& stats);
  // y = weight * (x - saved_mean_) * saved_invstd_ + bias.
  Tensor normalize(const Tensor& x) const;

  // Sizes the saved statistics (C floats) and the packed buffer (2C+1 doubles) for `device`;
  // allocates only when the channel count or device changed.
  void prepare_scratch(Device device);
  // The packed buffer as the forward statistics or the backward sums.
  ForwardStats forward_stats() const;
  BackwardStats backward_stats() const;
  Tensor tracked_buffer(const std::string& name);

  BatchNormOptions options_;
  ParameterPtr weight_;
  ParameterPtr bias_;

  // Kept by forward for backward.
  Tensor saved_input_;
  Tensor saved_mean_;    // (C)
  Tensor saved_invstd_;  // (C)
  bool saved_batch_stats_ = false;
  // Reused packed statistics: [s1, s2, n] forward, [sum_dy, sum_dy_xhat, n] backward.
  std::shared_ptr<Storage> packed_;
};

// Input (N, C) or (N, C, L).
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(const BatchNormOptions& options) : BatchNorm(options) {}
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input_dim(const Tensor& x) const override;
};

// Input (N, C, H, W), NCHW or channels-last.
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(const BatchNormOptions& options) : BatchNorm(options) {}
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input_dim(const Tensor& x) const override;
};

}  // namespace syncbn::nn
