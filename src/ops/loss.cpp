#include "ops/loss.h"

#include "cpu/loss.h"
#include "ops/dispatch.h"
#if defined(SYNCBN_WITH_CUDA)
#include "cuda/loss.h"
#endif

namespace syncbn::ops {

namespace {
// Labels are int32 values stored in a float tensor's memory (same size, never read as floats),
// so they can live on the logits' device.
int32_t* int32_data(Tensor& t) { return reinterpret_cast<int32_t*>(t.data()); }
const int32_t* int32_data(const Tensor& t) { return reinterpret_cast<const int32_t*>(t.data()); }
}  // namespace

CrossEntropyForward softmax_cross_entropy_forward(const Tensor& logits,
                                                  const std::vector<int32_t>& labels,
                                                  Tensor& probabilities, Tensor& device_labels) {
  SYNCBN_CHECK(logits.ndim() == 2, "CrossEntropyLoss: expected logits (N, classes), got ",
               shape_str(logits.shape()));
  const int64_t n = logits.size(0), k = logits.size(1);
  SYNCBN_CHECK(static_cast<int64_t>(labels.size()) == n, "CrossEntropyLoss: ", labels.size(),
               " labels for a batch of ", n);
  SYNCBN_CHECK(k > 0 || n == 0, "CrossEntropyLoss: logits ", shape_str(logits.shape()),
               " have no classes");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    SYNCBN_CHECK(labels[i] >= 0 && labels[i] < k, "CrossEntropyLoss: label ", labels[i],
                 " (sample ", i, ") is out of range for ", k, " classes");
  }
  const Device device = detail::common_device("CrossEntropyLoss", {&logits});
  if (!probabilities.defined() || probabilities.shape() != logits.shape() ||
      probabilities.device() != device) {
    probabilities = Tensor::empty(logits.shape(), device);
  }
  if (!device_labels.defined() || device_labels.numel() != n || device_labels.device() != device) {
    device_labels = Tensor::empty({n}, device);
  }
  CrossEntropyForward result;
  if (n == 0) return result;
  device_copy(device_labels.data(), device, labels.data(), Device::cpu(),
              labels.size() * sizeof(int32_t));
  // Per-sample losses and hits, reduced here in double.
  Tensor per_sample = Tensor::empty({2, n}, device);
  SYNCBN_DISPATCH(device, softmax_cross_entropy_forward, logits.data(), int32_data(device_labels),
                  n, k, probabilities.data(), per_sample.data(), per_sample.data() + n);
  const Tensor host = per_sample.to(Device::cpu());
  const float* losses = host.data();
  const float* hits = host.data() + n;
  for (int64_t i = 0; i < n; ++i) {
    result.loss_sum += losses[i];
    result.correct += hits[i] != 0.0f ? 1 : 0;
  }
  return result;
}

Tensor softmax_cross_entropy_backward(const Tensor& probabilities, const Tensor& device_labels,
                                      float scale) {
  SYNCBN_CHECK(probabilities.defined() && probabilities.ndim() == 2 && device_labels.defined() &&
                   device_labels.numel() == probabilities.size(0),
               "CrossEntropyLoss backward: no matching forward (call forward first)");
  const Device device =
      detail::common_device("CrossEntropyLoss backward", {&probabilities, &device_labels});
  Tensor dlogits = Tensor::empty(probabilities.shape(), device);
  SYNCBN_DISPATCH(device, softmax_cross_entropy_backward, probabilities.data(),
                  int32_data(device_labels), probabilities.size(0), probabilities.size(1), scale,
                  dlogits.data());
  return dlogits;
}

}  // namespace syncbn::ops
