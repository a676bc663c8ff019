#include "syncbn/nn/batch_norm.h"

#include <cmath>

#include "ops/batch_norm.h"
#include "syncbn/error.h"
#include "util/format.h"

namespace syncbn::nn {

BatchNorm::BatchNorm(const BatchNormOptions& options) : options_(options) {
  const int64_t c = options.num_features();
  SYNCBN_CHECK(c > 0, "BatchNorm: num_features must be positive, got ", c);
  SYNCBN_CHECK(options.eps() > 0, "BatchNorm: eps must be positive, got ", options.eps());
  if (options.affine()) {
    weight_ = register_parameter("weight", Tensor::full({c}, 1.0f), /*is_norm_or_bias=*/true);
    bias_ = register_parameter("bias", Tensor::zeros({c}), /*is_norm_or_bias=*/true);
  }
  if (options.track_running_stats()) {
    register_buffer("running_mean", Tensor::zeros({c}));
    register_buffer("running_var", Tensor::full({c}, 1.0f));
    register_buffer("num_batches_tracked", Tensor::zeros({1}));
  }
}

BatchNorm::BatchNorm(const BatchNorm& source, ShareState)
    : options_(source.options_), weight_(source.weight_), bias_(source.bias_) {
  // The same Parameter objects (gradients and DataParallel hooks included) and buffer handles
  // over the same storage, in the same order, so state_dict names and values are unchanged.
  for (const auto& [name, param] : source.named_parameters()) {
    own_parameters().emplace_back(name, param);
  }
  for (const auto& [name, buffer] : source.named_buffers())
    own_buffers().emplace_back(name, buffer);
  train(source.is_training());
}

std::string BatchNorm::describe() const {
  const auto momentum = options_.momentum();
  return std::to_string(options_.num_features()) + ", eps=" + python_float_repr(options_.eps()) +
         ", momentum=" + (momentum ? python_float_repr(*momentum) : "None") +
         ", affine=" + (options_.affine() ? "True" : "False") +
         ", track_running_stats=" + (options_.track_running_stats() ? "True" : "False");
}

Tensor BatchNorm::tracked_buffer(const std::string& name) {
  return options_.track_running_stats() ? own_buffer(name) : Tensor();
}

void BatchNorm::check_input_dim(const Tensor& x) const {
  SYNCBN_CHECK(x.ndim() >= 2, type_name(), ": expected input (N, C, *), got shape ",
               shape_str(x.shape()));
}

void BatchNorm1d::check_input_dim(const Tensor& x) const {
  SYNCBN_CHECK(x.ndim() == 2 || x.ndim() == 3, "BatchNorm1d: expected 2D or 3D input (got ",
               x.ndim(), "D input of shape ", shape_str(x.shape()), ")");
}

void BatchNorm2d::check_input_dim(const Tensor& x) const {
  SYNCBN_CHECK(x.ndim() == 4, "BatchNorm2d: expected 4D input (got ", x.ndim(), "D input of shape ",
               shape_str(x.shape()), ")");
}

void BatchNorm::prepare_scratch(Device device) {
  const int64_t c = options_.num_features();
  if (!saved_mean_.defined() || saved_mean_.device() != device) {
    saved_mean_ = Tensor::empty({c}, device);
    saved_invstd_ = Tensor::empty({c}, device);
  }
  const std::size_t packed_bytes = static_cast<std::size_t>(2 * c + 1) * sizeof(double);
  if (!packed_ || packed_->device != device || packed_->bytes != packed_bytes) {
    packed_ = std::make_shared<Storage>(device, packed_bytes);
  }
}

BatchNorm::ForwardStats BatchNorm::forward_stats() const {
  return {static_cast<double*>(packed_->ptr), options_.num_features(), packed_->device};
}

BatchNorm::BackwardStats BatchNorm::backward_stats() const {
  return {static_cast<double*>(packed_->ptr), options_.num_features(), packed_->device};
}

void BatchNorm::check_count(const Shape& local_shape, double local_count, bool reduced,
                            const ForwardStats& stats) {
  if (local_count > 1) return;  // the group total is at least this rank's count
  double total_count = local_count;
  if (reduced)
    device_copy(&total_count, Device::cpu(), stats.count(), stats.device, sizeof(double));
  if (total_count > 1) return;
  if (total_count == local_count) {
    SYNCBN_FAIL("Expected more than 1 value per channel when training, got input size ",
                shape_str(local_shape));
  }
  SYNCBN_FAIL("Expected more than 1 value per channel when training, got ", total_count,
              " value(s) per channel in total over the synchronised group (input size ",
              shape_str(local_shape), " on this process)");
}

void BatchNorm::compute_batch_stats(const Tensor& x) {
  const bool track = options_.track_running_stats();
  // K = running_mean: near the mean after a few steps and identical on every rank.
  const Tensor shift = track ? own_buffer("running_mean") : Tensor();
  const ForwardStats stats = forward_stats();
  ops::batch_norm_stats(x, shift, stats.data);
  const double local_count = static_cast<double>(ops::batch_norm_shape(x).count());
  const bool reduced = reduce_forward_stats(stats);
  check_count(x.shape(), local_count, reduced, stats);

  if (is_training() && track) {
    ops::RunningStats running{own_buffer("running_mean"), own_buffer("running_var"),
                              own_buffer("num_batches_tracked"), options_.momentum()};
    ops::batch_norm_finalize(stats.data, shift, options_.eps(), saved_mean_, saved_invstd_,
                             &running);
  } else {
    ops::batch_norm_finalize(stats.data, shift, options_.eps(), saved_mean_, saved_invstd_,
                             nullptr);
  }
}

void BatchNorm::load_running_stats() {
  saved_mean_.copy_from(own_buffer("running_mean"));
  ops::batch_norm_invstd(own_buffer("running_var"), options_.eps(), saved_invstd_);
}

Tensor BatchNorm::normalize(const Tensor& x) const {
  return ops::batch_norm_elemt(x, saved_mean_, saved_invstd_, weight_ ? weight_->value : Tensor(),
                               bias_ ? bias_->value : Tensor());
}

Tensor BatchNorm::forward_impl(const Tensor& x) {
  check_input_dim(x);
  SYNCBN_CHECK(x.size(1) == options_.num_features(), type_name(), "(", options_.num_features(),
               "): expected ", options_.num_features(), " channels, got input of shape ",
               shape_str(x.shape()));
  prepare_scratch(x.device());
  saved_batch_stats_ = uses_batch_stats();
  if (saved_batch_stats_) {
    compute_batch_stats(x);
  } else {
    load_running_stats();
  }
  saved_input_ = x;
  return normalize(x);
}

Tensor BatchNorm::backward_impl(const Tensor& dy) {
  SYNCBN_CHECK(saved_input_.defined(), type_name(), ": backward called before forward");
  SYNCBN_CHECK(dy.shape() == saved_input_.shape(), type_name(), ": gradient ",
               shape_str(dy.shape()), " does not match the forward input ",
               shape_str(saved_input_.shape()));
  const Tensor weight = weight_ ? weight_->value : Tensor();
  // Read at use time: DataParallel may have pointed grad into a bucket.
  const Tensor grad_weight = weight_ ? weight_->grad : Tensor();
  const Tensor grad_bias = bias_ ? bias_->grad : Tensor();
  if (!saved_batch_stats_) {
    // Constant statistics: dx = weight * invstd * dy, no communication.
    if (weight_ || bias_) {
      ops::batch_norm_backward_reduce(dy, saved_input_, saved_mean_, saved_invstd_, nullptr,
                                      grad_weight, grad_bias);
    }
    return ops::batch_norm_backward_elemt(dy, saved_input_, saved_mean_, saved_invstd_, weight,
                                          nullptr);
  }
  const BackwardStats sums = backward_stats();
  ops::batch_norm_backward_reduce(dy, saved_input_, saved_mean_, saved_invstd_, sums.data,
                                  grad_weight, grad_bias);
  reduce_backward_stats(sums);
  return ops::batch_norm_backward_elemt(dy, saved_input_, saved_mean_, saved_invstd_, weight,
                                        sums.data);
}

}  // namespace syncbn::nn
