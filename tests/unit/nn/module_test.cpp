#include "syncbn/nn/module.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "syncbn/error.h"

namespace syncbn::nn {
namespace {

// A model with parameters in a child and a buffer, built on Module alone.
class TinyNorm : public Module {
 public:
  explicit TinyNorm(int64_t channels) {
    register_parameter("weight", Tensor::full({channels}, 1.0f), true);
    register_parameter("bias", Tensor::zeros({channels}), true);
    register_buffer("running_mean", Tensor::zeros({channels}));
    register_buffer("num_batches_tracked", Tensor::zeros({}));
  }
  std::string type_name() const override { return "TinyNorm"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
};

class TinyNet : public Module {
 public:
  TinyNet() {
    register_parameter("weight", Tensor::zeros({2, 3}), false);
    register_module("bn", std::make_shared<TinyNorm>(2));
  }
  std::string type_name() const override { return "TinyNet"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
};

std::vector<NamedBuffer> tiny_state() {
  return {{"weight", Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6})},
          {"bn.weight", Tensor::from_vector({2}, {0.5f, 1.5f})},
          {"bn.bias", Tensor::from_vector({2}, {-1, 1})},
          {"bn.running_mean", Tensor::from_vector({2}, {0.25f, -0.25f})},
          {"bn.num_batches_tracked", Tensor::from_vector({}, {9})}};
}

TEST(LoadStateDictTest, LoadStateDictCopiesIntoParametersAndBuffers) {
  TinyNet net;
  const std::vector<NamedBuffer> state = tiny_state();
  load_state_dict(net, state);
  const auto loaded = net.state_dict();
  ASSERT_EQ(loaded.size(), state.size());
  for (std::size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(loaded[i].first, state[i].first);
    EXPECT_EQ(loaded[i].second.to_vector(), state[i].second.to_vector()) << state[i].first;
  }
  // The values were copied, not aliased.
  EXPECT_NE(net.named_parameters()[0].second->value.data(), state[0].second.data());
}

// PyTorch saves BatchNorm's num_batches_tracked as a 0-dim int64 tensor; a layer of ours holds
// it in shape [1]. Loading accepts the scalar there, and only there.
class OneValueBuffer : public Module {
 public:
  OneValueBuffer() { register_buffer("num_batches_tracked", Tensor::zeros({1})); }
  std::string type_name() const override { return "OneValueBuffer"; }

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
};

TEST(LoadStateDictTest, AScalarLoadsIntoAOneValueBufferAsPyTorchSavesNumBatchesTracked) {
  OneValueBuffer module;
  load_state_dict(module, {{"num_batches_tracked", Tensor::from_vector({}, {7})}});
  EXPECT_EQ(module.state_dict()[0].second.to_vector(), std::vector<float>{7});
  EXPECT_THROW(load_state_dict(module, {{"num_batches_tracked", Tensor::zeros({2})}}), Error);
}

TEST(LoadStateDictTest, LoadStateDictReportsEveryProblemAndChangesNothing) {
  TinyNet net;
  std::vector<NamedBuffer> state = tiny_state();
  state.erase(state.begin() + 3);                            // missing bn.running_mean
  state.emplace_back("bn.running_var", Tensor::zeros({2}));  // unexpected
  state[0].second = Tensor::zeros({3, 2});                   // shape mismatch
  try {
    load_state_dict(net, state);
    ADD_FAILURE() << "loaded an inconsistent state";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const char* phrase : {"missing", "bn.running_mean", "unexpected", "bn.running_var",
                               "size mismatch for weight", "[3, 2]", "[2, 3]"}) {
      EXPECT_NE(message.find(phrase), std::string::npos) << phrase << " not in: " << message;
    }
  }
  for (const auto& [name, tensor] : net.state_dict()) {
    if (name == "bn.weight") {
      EXPECT_EQ(tensor.to_vector(), (std::vector<float>{1, 1})) << "bn.weight was overwritten";
    }
  }
  std::vector<NamedBuffer> duplicated = tiny_state();
  duplicated.push_back(duplicated[1]);
  EXPECT_THROW(load_state_dict(net, duplicated), Error);
}

TEST(LoadStateDictTest, CopiesOntoTheModuleDevice) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  TinyNet net;
  net.to(Device::cuda(0));
  load_state_dict(net, tiny_state());
  EXPECT_EQ(net.state_dict()[0].second.to_vector(), tiny_state()[0].second.to_vector());
}

TEST(ModelSignatureTest, OneLinePerTensorWithNameAndShapeInStateDictOrder) {
  TinyNet net;
  EXPECT_EQ(model_signature(net.state_dict()),
            (std::vector<std::string>{"weight [2, 3]", "bn.weight [2]", "bn.bias [2]",
                                      "bn.running_mean [2]", "bn.num_batches_tracked []"}));
}

}  // namespace
}  // namespace syncbn::nn
