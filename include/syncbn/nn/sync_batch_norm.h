#pragma once
// SyncBatchNorm: batch norm whose statistics are those of the whole sync group (the world, or
// a group made by Communicator::split), docs/DESIGN.md §3.
//
// Forward (training): the local shifted sums [s1(C), s2(C), n_r] are allreduced in ONE
// collective of 2C+1 doubles; mean, var and invstd then come from the group totals, so P ranks
// of b samples normalise exactly as one process of P*b samples. Backward: ONE allreduce of
// [sum_dy(C), sum_dy_xhat(C)]; dx = gamma * invstd / n * (n dy - sum_dy - xhat sum_dy_xhat) with
// the group n. weight.grad and bias.grad stay LOCAL sums (DataParallel averages them). A rank
// with an empty batch still joins both collectives with zeros. Evaluation communicates nothing.
// PyTorch instead allgathers (mean, invstd, count) from every rank: O(P*C) per layer; this is O(C).
#include <memory>

#include "syncbn/nn/batch_norm.h"

namespace syncbn::dist {
class Communicator;
}

namespace syncbn::nn {

class SyncBatchNorm : public BatchNorm {
 public:
  SyncBatchNorm(const BatchNormOptions& options, std::shared_ptr<dist::Communicator> group);
  // Shares the parameters and buffers of `source` (see convert_sync_batchnorm).
  SyncBatchNorm(const BatchNorm& source, std::shared_ptr<dist::Communicator> group);

  std::string type_name() const override { return "SyncBatchNorm"; }
  const std::shared_ptr<dist::Communicator>& group() const { return group_; }

 protected:
  void check_input_dim(const Tensor& x) const override;
  bool reduce_forward_stats(ForwardStats stats) override;
  void reduce_backward_stats(BackwardStats stats) override;

 private:
  std::shared_ptr<dist::Communicator> group_;
};

// Replaces every BatchNorm1d/BatchNorm2d in `module` (recursively) by a SyncBatchNorm over
// `group` that shares its parameters and buffers, as torch.nn.SyncBatchNorm.convert_sync_batchnorm.
// Returns the module to use from now on: `module` itself, or a new SyncBatchNorm when `module`
// is a batch norm.
ModulePtr convert_sync_batchnorm(ModulePtr module, std::shared_ptr<dist::Communicator> group);

}  // namespace syncbn::nn
