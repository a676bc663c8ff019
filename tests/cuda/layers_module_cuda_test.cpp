// Modules on Device::cuda(0) against the same modules on the CPU: a small CNN with every
// non-normalisation layer (Conv2d with and without bias, ReLU, MaxPool2d, AvgPool2d, Dropout,
// GlobalAvgPool2d, Linear), CrossEntropyLoss and an SGD step. These run through the ops'
// dispatch, so they need every kernel group's CUDA kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/conv2d.h"
#include "syncbn/nn/dropout.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/pooling.h"
#include "syncbn/nn/sequential.h"
#include "syncbn/optim/sgd.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::random_labels;
using testing::random_values;

// The layers' reductions here are short (at most 54 terms for an output, a few hundred for a
// weight gradient), so the two devices' summation orders differ by a few float roundings of
// the terms: 1e-5 relative to each element, with elements below 1% of the tensor's largest held
// to 1e-5 of that 1% (their rounding error is set by the terms' size, not by the cancelled sum).
void expect_cuda_matches_cpu(const Tensor& actual, const Tensor& expected,
                             const std::string& what) {
  ASSERT_TRUE(actual.device().is_cuda()) << what;
  testing::expect_close_rel(actual, expected, 1e-5, what, 1e-2);
}

std::shared_ptr<nn::Sequential> make_cnn(uint64_t seed) {
  auto net = std::make_shared<nn::Sequential>();
  net->add(std::make_shared<nn::Conv2d>(nn::Conv2dOptions(3, 6, 3).padding(1), seed));
  net->add(std::make_shared<nn::ReLU>());
  net->add(std::make_shared<nn::MaxPool2d>(3, 2, 1));
  net->add(
      std::make_shared<nn::Conv2d>(nn::Conv2dOptions(6, 10, 3).stride(2).bias(false), seed + 1));
  net->add(std::make_shared<nn::ReLU>());
  net->add(std::make_shared<nn::AvgPool2d>(2, 1, 1));
  net->add(std::make_shared<nn::Dropout>(0.25f, seed + 2));
  net->add(std::make_shared<nn::GlobalAvgPool2d>());
  net->add(std::make_shared<nn::Linear>(10, 7, true, seed + 3));
  return net;
}

TEST(LayersModuleCudaTest, SmallCnnTrainingStepMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  auto cpu_net = make_cnn(11);
  auto gpu_net = make_cnn(11);
  gpu_net->to(gpu);
  const auto options = optim::SgdOptions().lr(0.05).momentum(0.9).weight_decay(1e-4);
  optim::Sgd cpu_sgd(cpu_net->parameters(), options);
  optim::Sgd gpu_sgd(gpu_net->parameters(), options);
  nn::CrossEntropyLoss cpu_loss, gpu_loss;

  const int64_t batch = 5;
  for (int step = 0; step < 2; ++step) {
    const std::string at = " (step " + std::to_string(step) + ")";
    const Tensor x =
        Tensor::from_vector({batch, 3, 13, 11}, random_values(batch * 3 * 13 * 11, 40 + step));
    const auto labels = random_labels(batch, 7, 50 + step);

    cpu_sgd.zero_grad();
    gpu_sgd.zero_grad();
    const Tensor cpu_logits = cpu_net->forward(x);
    const Tensor gpu_logits = gpu_net->forward(x.to(gpu));
    expect_cuda_matches_cpu(gpu_logits, cpu_logits, "logits" + at);

    const float cpu_value = cpu_loss.forward(cpu_logits, labels);
    const float gpu_value = gpu_loss.forward(gpu_logits, labels);
    EXPECT_NEAR(gpu_value, cpu_value, 1e-5 * std::fabs(cpu_value)) << "loss" << at;
    EXPECT_EQ(gpu_loss.correct(), cpu_loss.correct()) << at;

    const Tensor cpu_dx = cpu_net->backward(cpu_loss.backward());
    const Tensor gpu_dx = gpu_net->backward(gpu_loss.backward());
    expect_cuda_matches_cpu(gpu_dx, cpu_dx, "dx" + at);

    const auto cpu_params = cpu_net->named_parameters();
    const auto gpu_params = gpu_net->named_parameters();
    ASSERT_EQ(cpu_params.size(), gpu_params.size());
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      expect_cuda_matches_cpu(gpu_params[i].second->grad, cpu_params[i].second->grad,
                              cpu_params[i].first + ".grad" + at);
    }
    cpu_sgd.step();
    gpu_sgd.step();
    for (std::size_t i = 0; i < cpu_params.size(); ++i) {
      expect_cuda_matches_cpu(gpu_params[i].second->value, cpu_params[i].second->value,
                              cpu_params[i].first + at);
    }
  }
}

TEST(LayersModuleCudaTest, LinearMatchesCpuIncludingAnEmptyBatch) {
  SYNCBN_REQUIRE_CUDA();
  const Device gpu = Device::cuda(0);
  for (int64_t batch : {0, 1, 13}) {
    nn::Linear cpu_layer(37, 19, true, 5), gpu_layer(37, 19, true, 5);
    gpu_layer.to(gpu);
    const Tensor x = Tensor::from_vector({batch, 37}, random_values(batch * 37, 6));
    const Tensor dy = Tensor::from_vector({batch, 19}, random_values(batch * 19, 7));
    const std::string what = "batch " + std::to_string(batch);
    expect_cuda_matches_cpu(gpu_layer.forward(x.to(gpu)), cpu_layer.forward(x), what + " y");
    expect_cuda_matches_cpu(gpu_layer.backward(dy.to(gpu)), cpu_layer.backward(dy), what + " dx");
    expect_cuda_matches_cpu(gpu_layer.weight().grad, cpu_layer.weight().grad, what + " dweight");
    expect_cuda_matches_cpu(gpu_layer.bias()->grad, cpu_layer.bias()->grad, what + " dbias");
  }
}

}  // namespace
}  // namespace syncbn
