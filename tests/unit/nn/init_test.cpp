#include "syncbn/nn/init.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "syncbn/error.h"

namespace syncbn::nn {
namespace {

// Small stand-ins for layers, so these tests depend only on Module.
class FakeLayer : public Module {
 public:
  FakeLayer(const std::string& type, const Shape& weight_shape, bool is_norm) : type_(type) {
    // Start from values no scheme produces, so every test sees initialize() overwrite them.
    weight = register_parameter("weight", Tensor::full(weight_shape, 7.0f), is_norm);
    bias = register_parameter("bias", Tensor::full({weight_shape[0]}, 7.0f), true);
  }
  std::string type_name() const override { return type_; }
  ParameterPtr weight;
  ParameterPtr bias;

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }

 private:
  std::string type_;
};

// A layer with a 1-D weight that is neither a norm weight nor a bias (like PReLU's slope).
class FakeSlope : public Module {
 public:
  FakeSlope() { slope = register_parameter("weight", Tensor::full({4}, 0.25f), false); }
  std::string type_name() const override { return "PReLU"; }
  ParameterPtr slope;

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
};

class FakeNet : public Module {
 public:
  FakeNet() {
    conv =
        register_module("conv", std::make_shared<FakeLayer>("Conv2d", Shape{64, 32, 3, 3}, false));
    bn = register_module("bn", std::make_shared<FakeLayer>("BatchNorm2d", Shape{64}, true));
    prelu = register_module("prelu", std::make_shared<FakeSlope>());
    fc = register_module("fc", std::make_shared<FakeLayer>("Linear", Shape{512, 1024}, false));
  }
  std::string type_name() const override { return "FakeNet"; }
  std::shared_ptr<FakeLayer> conv, bn, fc;
  std::shared_ptr<FakeSlope> prelu;

 protected:
  Tensor forward_impl(const Tensor& x) override { return x.clone(); }
  Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
};

struct Moments {
  double mean;
  double std;
};

Moments moments(const Tensor& t) {
  const std::vector<float> values = t.to_vector();
  double sum = 0.0;
  for (float v : values) sum += v;
  const double mean = sum / static_cast<double>(values.size());
  double squares = 0.0;
  for (float v : values) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / static_cast<double>(values.size()))};
}

// The sample mean of n normal(0, s) draws has std s / sqrt(n); the sample std has relative std
// about 1 / sqrt(2n). Allow 5 of those.
void expect_normal(const Tensor& t, double expected_std, const std::string& what) {
  const double n = static_cast<double>(t.numel());
  const Moments m = moments(t);
  EXPECT_NEAR(m.mean, 0.0, 5.0 * expected_std / std::sqrt(n)) << what;
  EXPECT_NEAR(m.std, expected_std, 5.0 * expected_std / std::sqrt(2.0 * n)) << what;
}

void expect_all(const Tensor& t, float value, const std::string& what) {
  for (float v : t.to_vector()) ASSERT_EQ(v, value) << what;
}

TEST(InitTest, KaimingDrawsStdSqrtTwoOverFanIn) {
  FakeNet net;
  initialize(net, InitScheme::kKaiming, 1);
  expect_normal(net.fc->weight->value, std::sqrt(2.0 / 1024), "fc, fan_in 1024");
  expect_normal(net.conv->weight->value, std::sqrt(2.0 / (32 * 9)), "conv, fan_in 32*3*3");
}

TEST(InitTest, XavierDrawsStdSqrtTwoOverFanInPlusFanOut) {
  FakeNet net;
  initialize(net, InitScheme::kXavier, 1);
  expect_normal(net.fc->weight->value, std::sqrt(2.0 / (1024 + 512)), "fc");
  expect_normal(net.conv->weight->value, std::sqrt(2.0 / (32 * 9 + 64 * 9)), "conv");
}

TEST(InitTest, SmallAndLargeDrawFixedStd) {
  FakeNet net;
  initialize(net, InitScheme::kSmall, 1);
  expect_normal(net.fc->weight->value, 0.01, "small fc");
  expect_normal(net.conv->weight->value, 0.01, "small conv");
  initialize(net, InitScheme::kLarge, 1);
  expect_normal(net.fc->weight->value, 1.0, "large fc");
  expect_normal(net.conv->weight->value, 1.0, "large conv");
}

TEST(InitTest, ZerosZeroesEveryWeight) {
  FakeNet net;
  initialize(net, InitScheme::kZeros, 1);
  expect_all(net.fc->weight->value, 0.0f, "fc weight");
  expect_all(net.conv->weight->value, 0.0f, "conv weight");
}

TEST(InitTest, BiasesZeroNormWeightsOneAndOtherVectorsUntouched) {
  for (InitScheme scheme : {InitScheme::kKaiming, InitScheme::kXavier, InitScheme::kSmall,
                            InitScheme::kLarge, InitScheme::kZeros}) {
    FakeNet net;
    initialize(net, scheme, 3);
    const std::string name = init_scheme_name(scheme);
    expect_all(net.fc->bias->value, 0.0f, name + " fc.bias");
    expect_all(net.conv->bias->value, 0.0f, name + " conv.bias");
    expect_all(net.bn->weight->value, 1.0f, name + " bn.weight");
    expect_all(net.bn->bias->value, 0.0f, name + " bn.bias");
    expect_all(net.prelu->slope->value, 0.25f, name + " prelu.weight");
  }
}

TEST(InitTest, SameSeedGivesSameWeightsAndOtherSeedsDiffer) {
  FakeNet a, b, c;
  initialize(a, InitScheme::kKaiming, 42);
  initialize(b, InitScheme::kKaiming, 42);
  initialize(c, InitScheme::kKaiming, 43);
  EXPECT_EQ(a.fc->weight->value.to_vector(), b.fc->weight->value.to_vector());
  EXPECT_EQ(a.conv->weight->value.to_vector(), b.conv->weight->value.to_vector());
  EXPECT_NE(a.fc->weight->value.to_vector(), c.fc->weight->value.to_vector());
  EXPECT_NE(a.conv->weight->value.to_vector(), c.conv->weight->value.to_vector());
}

TEST(InitTest, LayersOfOneModelDrawIndependentStreams) {
  // Two layers of the same shape must not receive the same numbers (per-parameter seeds).
  class Twin : public Module {
   public:
    Twin() {
      a = register_parameter("a.weight", Tensor::zeros({16, 16}), false);
      b = register_parameter("b.weight", Tensor::zeros({16, 16}), false);
    }
    std::string type_name() const override { return "Twin"; }
    ParameterPtr a, b;

   protected:
    Tensor forward_impl(const Tensor& x) override { return x.clone(); }
    Tensor backward_impl(const Tensor& dy) override { return dy.clone(); }
  };
  Twin twin;
  initialize(twin, InitScheme::kLarge, 5);
  EXPECT_NE(twin.a->value.to_vector(), twin.b->value.to_vector());
}

TEST(InitTest, ParseInitSchemeAcceptsTheFiveNames) {
  EXPECT_EQ(parse_init_scheme("kaiming"), InitScheme::kKaiming);
  EXPECT_EQ(parse_init_scheme("xavier"), InitScheme::kXavier);
  EXPECT_EQ(parse_init_scheme("small"), InitScheme::kSmall);
  EXPECT_EQ(parse_init_scheme("large"), InitScheme::kLarge);
  EXPECT_EQ(parse_init_scheme("zeros"), InitScheme::kZeros);
  try {
    parse_init_scheme("orthogonal");
    ADD_FAILURE() << "unknown scheme accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const char* name : {"orthogonal", "kaiming", "xavier", "small", "large", "zeros"}) {
      EXPECT_NE(message.find(name), std::string::npos) << message;
    }
  }
}

TEST(InitTest, ConstantSetsEveryWeightToTheValueBiasesZeroNormWeightsOne) {
  FakeNet net;
  initialize(net, parse_init("constant:10"), 1);
  expect_all(net.fc->weight->value, 10.0f, "fc weight");
  expect_all(net.conv->weight->value, 10.0f, "conv weight");
  expect_all(net.fc->bias->value, 0.0f, "fc bias");
  expect_all(net.bn->weight->value, 1.0f, "bn weight (gamma)");
  expect_all(net.bn->bias->value, 0.0f, "bn bias (beta)");
  expect_all(net.prelu->slope->value, 0.25f, "prelu slope, untouched");
}

TEST(InitTest, ParseInitReadsConstantValuesAndRejectsBadOnes) {
  EXPECT_EQ(parse_init("constant:-0.5").scheme, InitScheme::kConstant);
  EXPECT_EQ(parse_init("constant:-0.5").value, -0.5f);
  EXPECT_EQ(parse_init("constant:1e-3").value, 1e-3f);
  EXPECT_EQ(parse_init("xavier").scheme, InitScheme::kXavier);
  for (const char* bad : {"constant:", "constant:ten", "constant:1x", "constant:nan",
                          "constant:inf", "constant:1e999", "constant"}) {
    try {
      parse_init(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("constant"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace syncbn::nn
