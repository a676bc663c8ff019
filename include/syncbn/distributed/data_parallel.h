#pragma once
// DataParallel: one model replica per rank, gradients averaged across ranks.
//
// Parameters and buffers are broadcast from rank 0 at construction, after a check that every
// rank built the same model (names, shapes, order). Gradients live in flat buckets (the first
// 1 MiB, then 25 MiB, as PyTorch DDP), filled in reverse registration order, which is roughly
// the order backward produces them; each parameter's grad is a view into its bucket, so no
// copies are made. When backward has produced the last gradient of a bucket its allreduce starts
// at once (non-blocking), overlapping the rest of backward; finish() waits and divides by P.
#include <cstddef>
#include <memory>
#include <vector>

#include "syncbn/arg.h"
#include "syncbn/nn/module.h"

namespace syncbn::dist {

class Communicator;
class Request;

struct DataParallelOptions {
  SYNCBN_ARG(std::size_t, first_bucket_bytes) = std::size_t{1} << 20;
  SYNCBN_ARG(std::size_t, bucket_bytes) = std::size_t{25} << 20;
  // Broadcast the buffers (running statistics of unsynchronised BN) from rank 0 before every
  // forward in training, as torch DDP's broadcast_buffers=True.
  SYNCBN_ARG(bool, broadcast_buffers) = false;
};

// Timing of the last synchronised backward, for the overlap benchmark.
struct OverlapStats {
  double backward_seconds = 0;     // model backward, hooks and launches included
  double finish_wait_seconds = 0;  // blocked in finish() on allreduces still in flight
  int64_t buckets = 0;
  int64_t bytes = 0;
};

// Move the model to its device (Module::to) before wrapping it: the gradients become views
// into buckets on that device.
class DataParallel {
 public:
  DataParallel(std::shared_ptr<nn::Module> model, std::shared_ptr<Communicator> comm,
               DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  Tensor forward(const Tensor& x);
  // Model backward (bucket allreduces start inside it), then finish().
  Tensor backward(const Tensor& dy);
  // Waits for every bucket (starting any not yet started) and averages over the ranks.
  void finish();

  // While false (gradient accumulation), backward only accumulates local gradients; the next
  // synchronised backward averages the accumulated sum.
  void set_sync(bool enabled) { sync_enabled_ = enabled; }
  bool sync_enabled() const { return sync_enabled_; }

  nn::Module& module() { return *model_; }
  const OverlapStats& overlap() const { return overlap_; }
  // Sizes in bytes of the buckets, in launch order.
  std::vector<std::size_t> bucket_sizes() const;

 private:
  struct Bucket {
    Tensor flat;
    std::vector<nn::Parameter*> params;
    std::vector<std::string> names;  // state_dict names of params, for errors
    std::vector<char> ready;         // params whose gradient is ready in this backward
    std::size_t pending = 0;         // gradients not yet ready in this backward
    std::unique_ptr<Request> request;
  };

  void build_buckets();
  void on_grad_ready(std::size_t bucket_index, std::size_t param_index);
  // Re-arms every bucket for the next backward.
  void reset_buckets();
  void launch(Bucket& bucket);
  void broadcast_state();

  std::shared_ptr<nn::Module> model_;
  std::shared_ptr<Communicator> comm_;
  DataParallelOptions options_;
  std::vector<Bucket> buckets_;
  bool sync_enabled_ = true;
  OverlapStats overlap_;
};

// RAII gradient accumulation: `{ NoSync guard(ddp); ddp.backward(dy); }` as torch's no_sync().
class NoSync {
 public:
  explicit NoSync(DataParallel& ddp) : ddp_(ddp), previous_(ddp.sync_enabled()) {
    ddp.set_sync(false);
  }
  ~NoSync() { ddp_.set_sync(previous_); }
  NoSync(const NoSync&) = delete;
  NoSync& operator=(const NoSync&) = delete;

 private:
  DataParallel& ddp_;
  bool previous_;
};

}  // namespace syncbn::dist
