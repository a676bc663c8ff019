#include "syncbn/optim/sgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "support/close.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn::optim {
namespace {

using testing::expect_close;
using testing::random_values;

nn::ParameterPtr make_parameter(const std::vector<float>& values, bool is_norm_or_bias = false) {
  auto param = std::make_shared<nn::Parameter>();
  const Shape shape{static_cast<int64_t>(values.size())};
  param->value = Tensor::from_vector(shape, values);
  param->grad = Tensor::zeros(shape);
  param->is_norm_or_bias = is_norm_or_bias;
  return param;
}

// torch.optim.SGD's update for one parameter, written out in double from its documentation
// (torch/optim/sgd.py, _single_tensor_sgd).
struct ReferenceSgd {
  SgdOptions options;
  std::vector<double> param;
  std::vector<double> buffer;
  bool has_buffer = false;

  void step(const std::vector<float>& grad, bool decay = true) {
    const double weight_decay = decay ? options.weight_decay() : 0.0;
    std::vector<double> d(param.size());
    for (std::size_t i = 0; i < param.size(); ++i) d[i] = grad[i] + weight_decay * param[i];
    if (options.momentum() != 0.0) {
      if (!has_buffer) {
        buffer = d;
        has_buffer = true;
      } else {
        for (std::size_t i = 0; i < d.size(); ++i) {
          buffer[i] = options.momentum() * buffer[i] + (1.0 - options.dampening()) * d[i];
        }
      }
      for (std::size_t i = 0; i < d.size(); ++i) {
        d[i] = options.nesterov() ? d[i] + options.momentum() * buffer[i] : buffer[i];
      }
    }
    for (std::size_t i = 0; i < d.size(); ++i) param[i] -= options.lr() * d[i];
  }
};

// Runs `steps` steps of Sgd and of the double reference on the same gradients.
void check_against_reference(const SgdOptions& options, int steps, std::size_t n,
                             const std::string& what) {
  const std::vector<float> initial = random_values(n, 1);
  auto param = make_parameter(initial);
  Sgd sgd({param}, options);
  ReferenceSgd reference{options, std::vector<double>(initial.begin(), initial.end())};
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> grad = random_values(n, 100 + step);
    param->grad.copy_from(Tensor::from_vector(param->grad.shape(), grad));
    sgd.step();
    reference.step(grad);
    expect_close(param->value.to_vector(), reference.param, 1e-5, 1e-6,
                 what + " after step " + std::to_string(step + 1));
  }
}

TEST(SgdTest, PlainStepIsParamMinusLrTimesGrad) {
  auto param = make_parameter({1.0f, -2.0f, 0.5f});
  param->grad.copy_from(Tensor::from_vector({3}, {0.5f, 1.0f, -4.0f}));
  Sgd sgd({param}, SgdOptions().lr(0.1));
  sgd.step();
  expect_close(param->value.to_vector(), {0.95, -2.1, 0.9}, 1e-6, 1e-6, "plain");
}

TEST(SgdTest, MomentumBufferStartsAtFirstGradientNotDampened) {
  // torch: buf = d on the first step (no dampening), then buf = m * buf + (1 - dampening) * d.
  // p = 1, g = 1 every step, lr 0.1, m 0.9, dampening 0.5:
  //   step 1: buf = 1,                   p = 1 - 0.1 * 1 = 0.9
  //   step 2: buf = 0.9 + 0.5 = 1.4,      p = 0.9 - 0.14 = 0.76
  //   step 3: buf = 1.26 + 0.5 = 1.76,    p = 0.76 - 0.176 = 0.584
  auto param = make_parameter({1.0f});
  Sgd sgd({param}, SgdOptions().lr(0.1).momentum(0.9).dampening(0.5));
  const double expected[] = {0.9, 0.76, 0.584};
  for (double value : expected) {
    param->grad.fill_(1.0f);
    sgd.step();
    EXPECT_NEAR(param->value.to_vector()[0], value, 1e-6);
  }
}

TEST(SgdTest, NesterovAndWeightDecayHandComputed) {
  // p = 2, g = 1, lr 0.1, m 0.5, weight_decay 0.1, nesterov:
  //   step 1: d = 1 + 0.2 = 1.2, buf = 1.2, d = 1.2 + 0.6 = 1.8, p = 2 - 0.18 = 1.82
  //   step 2: d = 1 + 0.182 = 1.182, buf = 0.6 + 1.182 = 1.782, d = 1.182 + 0.891 = 2.073,
  //           p = 1.82 - 0.2073 = 1.6127
  auto param = make_parameter({2.0f});
  Sgd sgd({param}, SgdOptions().lr(0.1).momentum(0.5).weight_decay(0.1).nesterov(true));
  for (double value : {1.82, 1.6127}) {
    param->grad.fill_(1.0f);
    sgd.step();
    EXPECT_NEAR(param->value.to_vector()[0], value, 1e-6);
  }
}

TEST(SgdTest, SequencesMatchTorchUpdateInDouble) {
  struct Case {
    std::string name;
    SgdOptions options;
  };
  const std::vector<Case> cases = {
      {"plain", SgdOptions().lr(0.05)},
      {"momentum", SgdOptions().lr(0.05).momentum(0.9)},
      {"dampening", SgdOptions().lr(0.05).momentum(0.9).dampening(0.3)},
      {"nesterov", SgdOptions().lr(0.05).momentum(0.9).nesterov(true)},
      {"weight decay", SgdOptions().lr(0.05).weight_decay(0.01)},
      {"momentum + weight decay", SgdOptions().lr(0.05).momentum(0.9).weight_decay(1e-4)},
      {"nesterov + weight decay",
       SgdOptions().lr(0.05).momentum(0.8).weight_decay(0.02).nesterov(true)},
      {"all but nesterov", SgdOptions().lr(0.2).momentum(0.7).dampening(0.1).weight_decay(0.05)},
  };
  for (const Case& c : cases) check_against_reference(c.options, 6, 37, c.name);
}

TEST(SgdTest, LargeTensorMatchesReferenceOnTheParallelPath) {
  // 100000 elements: above the kernel's OpenMP threshold.
  check_against_reference(SgdOptions().lr(0.1).momentum(0.9).dampening(0.1).weight_decay(1e-3), 3,
                          100000, "large");
  check_against_reference(SgdOptions().lr(0.1).momentum(0.9).nesterov(true), 3, 100000,
                          "large nesterov");
}

TEST(SgdTest, NoWeightDecayOnNormAndBiasWhenDisabled) {
  const auto options =
      SgdOptions().lr(0.1).momentum(0.9).weight_decay(0.5).decay_norm_and_bias(false);
  const std::vector<float> initial = {1.0f, -3.0f, 2.0f};
  auto weight = make_parameter(initial, /*is_norm_or_bias=*/false);
  auto bias = make_parameter(initial, /*is_norm_or_bias=*/true);
  Sgd sgd({weight, bias}, options);
  ReferenceSgd weight_reference{options, {1.0, -3.0, 2.0}};
  ReferenceSgd bias_reference{options, {1.0, -3.0, 2.0}};
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> grad = random_values(3, 7 + step);
    weight->grad.copy_from(Tensor::from_vector({3}, grad));
    bias->grad.copy_from(Tensor::from_vector({3}, grad));
    sgd.step();
    weight_reference.step(grad, /*decay=*/true);
    bias_reference.step(grad, /*decay=*/false);
  }
  expect_close(weight->value.to_vector(), weight_reference.param, 1e-5, 1e-6, "decayed weight");
  expect_close(bias->value.to_vector(), bias_reference.param, 1e-5, 1e-6, "undecayed bias");
  // The two must really differ, or the test would not distinguish the cases.
  EXPECT_GT(std::fabs(weight->value.to_vector()[1] - bias->value.to_vector()[1]), 0.1);
}

TEST(SgdTest, DecaysNormAndBiasByDefault) {
  auto bias = make_parameter({2.0f}, /*is_norm_or_bias=*/true);
  Sgd sgd({bias}, SgdOptions().lr(0.1).weight_decay(0.5));
  sgd.step();  // grad 0: p = 2 - 0.1 * 0.5 * 2 = 1.9
  EXPECT_NEAR(bias->value.to_vector()[0], 1.9, 1e-6);
}

TEST(SgdTest, ReadsTheGradientHandleAtStepTime) {
  // DataParallel replaces grad by a view into a bucket after construction.
  auto param = make_parameter({1.0f, 1.0f});
  Sgd sgd({param}, SgdOptions().lr(1.0));
  Tensor bucket = Tensor::from_vector({4}, {9.0f, 0.25f, 0.5f, 9.0f});
  param->grad = bucket.view({2}, 1);
  sgd.step();
  expect_close(param->value.to_vector(), {0.75, 0.5}, 1e-7, 1e-6, "bucket view gradient");
}

TEST(SgdTest, SetLrAppliesFromTheNextStep) {
  auto param = make_parameter({1.0f});
  Sgd sgd({param}, SgdOptions().lr(0.1));
  param->grad.fill_(1.0f);
  sgd.step();
  sgd.set_lr(0.01);
  EXPECT_EQ(sgd.lr(), 0.01);
  sgd.step();
  EXPECT_NEAR(param->value.to_vector()[0], 1.0 - 0.1 - 0.01, 1e-7);
  EXPECT_THROW(sgd.set_lr(-1.0), Error);
}

TEST(SgdTest, ZeroGradZeroesEveryGradient) {
  auto a = make_parameter({1.0f, 2.0f});
  auto b = make_parameter({3.0f});
  a->grad.fill_(5.0f);
  b->grad.fill_(-1.0f);
  Sgd sgd({a, b}, SgdOptions{});
  sgd.zero_grad();
  EXPECT_EQ(a->grad.to_vector(), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_EQ(b->grad.to_vector(), (std::vector<float>{0.0f}));
}

TEST(SgdTest, InvalidOptionsThrowLikeTorch) {
  auto param = make_parameter({1.0f});
  EXPECT_THROW(Sgd({param}, SgdOptions().lr(-0.1)), Error);
  EXPECT_THROW(Sgd({param}, SgdOptions().momentum(-0.5)), Error);
  EXPECT_THROW(Sgd({param}, SgdOptions().weight_decay(-1e-4)), Error);
  EXPECT_THROW(Sgd({param}, SgdOptions().momentum(0.0).nesterov(true)), Error);
  EXPECT_THROW(Sgd({param}, SgdOptions().momentum(0.9).dampening(0.1).nesterov(true)), Error);
  EXPECT_NO_THROW(Sgd({param}, SgdOptions().momentum(0.9).nesterov(true)));
  try {
    Sgd({param}, SgdOptions().momentum(0.0).nesterov(true));
    ADD_FAILURE() << "nesterov without momentum was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Nesterov"), std::string::npos) << e.what();
  }
}

TEST(SgdTest, MismatchedGradientShapeIsAnError) {
  auto param = make_parameter({1.0f, 2.0f});
  param->grad = Tensor::zeros({3});
  Sgd sgd({param}, SgdOptions{});
  EXPECT_THROW(sgd.step(), Error);
}

TEST(SgdTest, StateDictRestoresMomentumSoResumeMatchesUninterruptedRun) {
  const auto options = SgdOptions().lr(0.1).momentum(0.9).dampening(0.2);
  const std::vector<float> initial = random_values(5, 3);
  ReferenceSgd reference{options, std::vector<double>(initial.begin(), initial.end())};

  auto param = make_parameter(initial);
  auto first = std::make_unique<Sgd>(std::vector<nn::ParameterPtr>{param}, options);
  EXPECT_TRUE(first->state_dict().empty());  // no buffer before the first step
  for (int step = 0; step < 4; ++step) {
    const std::vector<float> grad = random_values(5, 50 + step);
    param->grad.copy_from(Tensor::from_vector({5}, grad));
    reference.step(grad);
    if (step == 2) {
      // "Checkpoint" after two steps: a fresh optimizer resumes from the saved state.
      auto saved = first->state_dict();
      ASSERT_EQ(saved.size(), 1u);
      EXPECT_EQ(saved[0].first, "state.0.momentum_buffer");
      std::vector<std::pair<std::string, Tensor>> copy = {
          {saved[0].first, saved[0].second.clone()}};
      first = std::make_unique<Sgd>(std::vector<nn::ParameterPtr>{param}, options);
      first->load_state_dict(copy);
    }
    first->step();
  }
  expect_close(param->value.to_vector(), reference.param, 1e-5, 1e-6, "resumed");

  EXPECT_THROW(first->load_state_dict({{"state.7.momentum_buffer", Tensor::zeros({5})}}), Error);
  EXPECT_THROW(first->load_state_dict({{"state.0.momentum_buffer", Tensor::zeros({4})}}), Error);
}

}  // namespace
}  // namespace syncbn::optim
