#include "syncbn/nn/sync_batch_norm.h"

#include "syncbn/distributed/communicator.h"
#include "syncbn/error.h"
#include "syncbn/profile.h"

namespace syncbn::nn {

SyncBatchNorm::SyncBatchNorm(const BatchNormOptions& options,
                             std::shared_ptr<dist::Communicator> group)
    : BatchNorm(options), group_(std::move(group)) {
  SYNCBN_CHECK(group_ != nullptr, "SyncBatchNorm needs a communicator for its sync group");
}

SyncBatchNorm::SyncBatchNorm(const BatchNorm& source, std::shared_ptr<dist::Communicator> group)
    : BatchNorm(source, ShareState{}), group_(std::move(group)) {
  SYNCBN_CHECK(group_ != nullptr, "SyncBatchNorm needs a communicator for its sync group");
}

void SyncBatchNorm::check_input_dim(const Tensor& x) const {
  SYNCBN_CHECK(x.ndim() >= 2, "SyncBatchNorm: expected at least 2-D input (N, C, *), got ",
               shape_str(x.shape()));
  BatchNorm::check_input_dim(x);
}

bool SyncBatchNorm::reduce_forward_stats(ForwardStats stats) {
  // Evaluation without running statistics normalises with local batch statistics, as PyTorch's
  // SyncBatchNorm does: no collective outside training.
  if (!is_training() || group_->size() == 1) return false;
  const profile::ScopedCollective timed(profile::Collective::kSyncBn, "syncbn allreduce forward",
                                        stats.size() * int64_t{sizeof(double)});
  group_->allreduce_sum(stats.data, stats.size(), dist::DataType::kFloat64, stats.device);
  return true;
}

void SyncBatchNorm::reduce_backward_stats(BackwardStats stats) {
  if (!is_training() || group_->size() == 1) return;
  const profile::ScopedCollective timed(profile::Collective::kSyncBn, "syncbn allreduce backward",
                                        stats.size() * int64_t{sizeof(double)});
  group_->allreduce_sum(stats.data, stats.size(), dist::DataType::kFloat64, stats.device);
}

ModulePtr convert_sync_batchnorm(ModulePtr module, std::shared_ptr<dist::Communicator> group) {
  if (auto* bn = dynamic_cast<BatchNorm*>(module.get())) {
    if (dynamic_cast<SyncBatchNorm*>(bn)) return module;
    return std::make_shared<SyncBatchNorm>(*bn, group);
  }
  for (const auto& [name, child] : std::vector(module->children())) {
    ModulePtr converted = convert_sync_batchnorm(child, group);
    if (converted != child) module->replace_child(name, converted);
  }
  return module;
}

}  // namespace syncbn::nn
