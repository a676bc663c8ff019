#include "syncbn/distributed/data_parallel.h"

#include <iterator>
#include <map>

#include "ops/elementwise.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/consistency.h"
#include "syncbn/error.h"
#include "syncbn/profile.h"
#include "util/clock.h"

namespace syncbn::dist {

DataParallel::DataParallel(std::shared_ptr<nn::Module> model, std::shared_ptr<Communicator> comm,
                           DataParallelOptions options)
    : model_(std::move(model)), comm_(std::move(comm)), options_(options) {
  SYNCBN_CHECK(model_ && comm_, "DataParallel needs a model and a communicator");
  SYNCBN_CHECK(options_.first_bucket_bytes() > 0 && options_.bucket_bytes() > 0,
               "DataParallel: bucket sizes must be positive");
  check_same_signature(*comm_, nn::model_signature(model_->state_dict()), "model");
  broadcast_state();
  build_buckets();
}

DataParallel::~DataParallel() {
  // Requests in flight reference bucket memory: wait before it goes away.
  for (auto& bucket : buckets_) {
    if (bucket.request) bucket.request->wait();
  }
  for (auto& param : model_->parameters()) param->on_grad_ready = nullptr;
}

void DataParallel::broadcast_state() {
  if (comm_->size() == 1) return;
  for (auto& [name, tensor] : model_->state_dict()) {
    Tensor t = tensor;
    comm_->broadcast(t, 0);
  }
}

void DataParallel::build_buckets() {
  // Reverse registration order: the last layers' gradients are ready first in backward.
  std::vector<nn::ParameterPtr> params = model_->parameters();
  // As torch DDP: a bucket takes parameters until it reaches its cap (1 MiB for the first, so
  // that communication starts early; then 25 MiB, so that there are few collectives).
  std::vector<std::vector<nn::Parameter*>> groups(1);
  std::size_t bytes = 0;
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    groups.back().push_back(it->get());
    bytes += static_cast<std::size_t>((*it)->value.numel()) * sizeof(float);
    const std::size_t limit =
        groups.size() == 1 ? options_.first_bucket_bytes() : options_.bucket_bytes();
    if (bytes >= limit && std::next(it) != params.rend()) {
      groups.emplace_back();
      bytes = 0;
    }
  }
  if (groups.back().empty()) groups.pop_back();

  std::map<const nn::Parameter*, std::string> names;
  for (const auto& [name, param] : model_->named_parameters()) {
    auto [it, first] = names.emplace(param.get(), name);
    if (!first) it->second += " (also " + name + ")";  // one parameter under several names
  }

  buckets_.resize(groups.size());
  for (std::size_t b = 0; b < groups.size(); ++b) {
    Bucket& bucket = buckets_[b];
    bucket.params = groups[b];
    for (nn::Parameter* p : bucket.params) bucket.names.push_back(names[p]);
    int64_t total = 0;
    for (nn::Parameter* p : bucket.params) total += p->value.numel();
    const Device device = bucket.params.front()->value.device();
    bucket.flat = Tensor::zeros({total}, device);
    // Each gradient becomes a view into the bucket, keeping what it held.
    int64_t offset = 0;
    for (std::size_t i = 0; i < bucket.params.size(); ++i) {
      nn::Parameter* p = bucket.params[i];
      Tensor view = bucket.flat.view(p->value.shape(), offset);
      if (p->grad.defined()) view.copy_from(p->grad);
      p->grad = view;
      offset += p->value.numel();
      p->on_grad_ready = [this, b, i](nn::Parameter&) { on_grad_ready(b, i); };
    }
  }
  reset_buckets();
}

void DataParallel::reset_buckets() {
  for (auto& bucket : buckets_) {
    bucket.pending = bucket.params.size();
    bucket.ready.assign(bucket.params.size(), 0);
  }
}

std::vector<std::size_t> DataParallel::bucket_sizes() const {
  std::vector<std::size_t> sizes;
  for (const auto& bucket : buckets_) sizes.push_back(bucket.flat.numel() * sizeof(float));
  return sizes;
}

Tensor DataParallel::forward(const Tensor& x) {
  if (options_.broadcast_buffers() && model_->is_training() && comm_->size() > 1) {
    for (auto& [name, buffer] : model_->named_buffers()) {
      Tensor t = buffer;
      comm_->broadcast(t, 0);
    }
  }
  return model_->forward(x);
}

Tensor DataParallel::backward(const Tensor& dy) {
  const double start = now_seconds();
  Tensor dx = model_->backward(dy);
  overlap_.backward_seconds = now_seconds() - start;
  finish();
  return dx;
}

void DataParallel::on_grad_ready(std::size_t bucket_index, std::size_t param_index) {
  Bucket& bucket = buckets_[bucket_index];
  // A parameter used twice in the model (shared) reports twice: its bucket's allreduce would
  // then start while backward still adds to the gradient. torch DDP refuses this as well.
  SYNCBN_CHECK(!bucket.ready[param_index], "DataParallel: parameter '", bucket.names[param_index],
               "' reported its gradient ready twice in one backward; a parameter shared by two "
               "modules is not supported (its bucket would be reduced while backward still "
               "writes it)");
  bucket.ready[param_index] = 1;
  if (--bucket.pending == 0 && sync_enabled_) launch(bucket);
  // Open MPI progresses non-blocking collectives only inside MPI calls: poke the ones in flight
  // so they advance while backward computes. The first poke that finds one done ends its span
  // on the timeline.
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    if (buckets_[b].request && buckets_[b].request->test()) profile::bucket_completed(b);
  }
}

void DataParallel::launch(Bucket& bucket) {
  if (comm_->size() == 1) return;
  profile::bucket_launched(static_cast<std::size_t>(&bucket - buckets_.data()),
                           bucket.flat.numel() * int64_t{sizeof(float)});
  bucket.request = comm_->iallreduce_sum(bucket.flat);
}

void DataParallel::finish() {
  overlap_.finish_wait_seconds = 0;
  overlap_.buckets = 0;
  overlap_.bytes = 0;
  if (!sync_enabled_) {
    // Accumulating: keep local sums, and re-arm the buckets for the next backward.
    reset_buckets();
    return;
  }
  const float inverse_size = 1.0f / static_cast<float>(comm_->size());
  for (auto& bucket : buckets_) {
    // A bucket whose gradients were not all produced (an unused parameter) starts now, so
    // every rank makes the same collectives in the same order.
    if (bucket.pending > 0) launch(bucket);
  }
  const profile::ScopedSpan span("wait for gradient buckets", "gradient");
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    if (bucket.request) {
      const double start = now_seconds();
      bucket.request->wait();
      overlap_.finish_wait_seconds += now_seconds() - start;
      profile::bucket_completed(b);
      bucket.request.reset();
    }
    if (comm_->size() > 1) ops::scale_(bucket.flat, inverse_size);
    ++overlap_.buckets;
    overlap_.bytes += static_cast<int64_t>(bucket.flat.numel() * sizeof(float));
  }
  reset_buckets();
}

}  // namespace syncbn::dist
