// The --health report: its numbers against direct computations on a small model whose weights,
// gradients, BN buffers and ReLU outputs are set by hand, and a flag for each value outside the
// write-up's ranges (and none inside them).
#include "train/health.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "syncbn/error.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/sequential.h"

namespace syncbn::train {
namespace {

// Linear(4, 3) -> BatchNorm1d(3) -> ReLU, with healthy values: weight 0.5 everywhere, gradient
// 1e-2 per element, running_mean +-1, running_var 2, and half of the ReLU's outputs zero.
struct SmallNet {
  std::shared_ptr<nn::Sequential> model = std::make_shared<nn::Sequential>();
  nn::ParameterPtr weight;
  Tensor running_mean, running_var;

  SmallNet() {
    model->add(std::make_shared<nn::Linear>(4, 3, true, 1));
    model->add(std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(3)));
    model->add(std::make_shared<nn::ReLU>());
    for (auto& [name, p] : model->named_parameters()) {
      p->grad = Tensor::full(p->value.shape(), 1e-2f);
      if (name == "0.weight") weight = p;
    }
    weight->value.fill_(0.5f);
    for (auto& [name, buffer] : model->named_buffers()) {
      if (name == "1.running_mean") running_mean = buffer;
      if (name == "1.running_var") running_var = buffer;
    }
    running_mean.copy_from(Tensor::from_vector({3}, {1.0f, -1.0f, 1.0f}));
    running_var.fill_(2.0f);
    relu_sees({-1.0f, 2.0f, -3.0f, 4.0f});
  }
  // The ReLU's last forward: these values as a (values/2, 2) batch.
  void relu_sees(const std::vector<float>& values) {
    const int64_t n = static_cast<int64_t>(values.size());
    model->child("2")->forward(Tensor::from_vector({n / 2, 2}, values));
  }
};

TEST(HealthTest, DueAtTheEpochsLastStepOrEveryKStepsOrNever) {
  EXPECT_FALSE(health_due(-1, 10, true));
  EXPECT_TRUE(health_due(0, 7, true));
  EXPECT_FALSE(health_due(0, 7, false));
  EXPECT_TRUE(health_due(5, 10, false));
  EXPECT_FALSE(health_due(5, 11, true));
}

TEST(HealthTest, ReportsNormsBufferMeansAndReluZerosOfEachLayer) {
  SmallNet net;
  const HealthReport r = health_report(*net.model, 12);
  EXPECT_EQ(r.step, 12);
  ASSERT_EQ(r.parameters.size(), 4u);  // 0.weight, 0.bias, 1.weight, 1.bias
  EXPECT_EQ(r.parameters[0].name, "0.weight");
  EXPECT_NEAR(r.parameters[0].weight_norm, std::sqrt(12 * 0.25), 1e-6);
  EXPECT_NEAR(r.parameters[0].grad_norm, std::sqrt(12 * 1e-4), 1e-7);
  EXPECT_NEAR(r.parameters[0].grad_rms, 1e-2, 1e-8);
  ASSERT_EQ(r.norms.size(), 1u);
  EXPECT_EQ(r.norms[0].name, "1");
  EXPECT_EQ(r.norms[0].type, "BatchNorm1d");
  EXPECT_NEAR(r.norms[0].mean_abs_running_mean, 1.0, 1e-7);
  EXPECT_NEAR(r.norms[0].mean_running_var, 2.0, 1e-7);
  ASSERT_EQ(r.relus.size(), 1u);
  EXPECT_EQ(r.relus[0].name, "2");
  EXPECT_DOUBLE_EQ(r.relus[0].zero_fraction, 0.5);
  EXPECT_TRUE(r.flags.empty()) << r.flags[0];
}

TEST(HealthTest, FlagsEachValueOutsideTheRangesWithTheLayersName) {
  SmallNet net;
  net.weight->grad.fill_(0.5f);  // RMS 0.5 > 0.1
  net.running_mean.fill_(-6.0f);
  net.running_var.fill_(0.05f);
  net.relu_sees({-1.0f, -2.0f, -3.0f, 0.0f});
  const HealthReport r = health_report(*net.model, 3);
  ASSERT_EQ(r.flags.size(), 4u);
  EXPECT_EQ(r.flags[0], "0.weight: gradient RMS 0.5 outside [0.0001, 0.1]");
  EXPECT_EQ(r.flags[1], "1: mean |running_mean| 6 >= 5");
  EXPECT_EQ(r.flags[2], "1: mean running_var 0.05 outside [0.1, 10]");
  EXPECT_EQ(r.flags[3], "2: dead ReLU fraction 1 > 0.9");
  net.weight->grad.fill_(1e-6f);  // too small, and a bias's gradient is never checked
  net.running_mean.fill_(0.0f);
  net.running_var.fill_(20.0f);
  net.relu_sees({1.0f, 2.0f, 3.0f, 4.0f});
  const HealthReport low = health_report(*net.model, 4);
  ASSERT_EQ(low.flags.size(), 2u);
  EXPECT_EQ(low.flags[0], "0.weight: gradient RMS 1e-06 outside [0.0001, 0.1]");
  EXPECT_EQ(low.flags[1], "1: mean running_var 20 outside [0.1, 10]");
}

TEST(HealthTest, NonFiniteValuesAreFlaggedAndWrittenAsJsonNull) {
  SmallNet net;
  net.weight->grad.fill_(NAN);
  const HealthReport r = health_report(*net.model, 5);
  ASSERT_EQ(r.flags.size(), 1u);
  EXPECT_EQ(r.flags[0], "0.weight: gradient RMS nan outside [0.0001, 0.1]");
  const nlohmann::json json = nlohmann::json::parse(health_json(r));
  EXPECT_TRUE(json["parameters"]["0.weight"]["grad_norm"].is_null());
  EXPECT_EQ(json["parameters"]["0.weight"]["ndim"], 2);
  EXPECT_EQ(json["parameters"]["1.weight"]["ndim"], 1);
  EXPECT_EQ(json["norms"]["1"]["type"], "BatchNorm1d");
  EXPECT_DOUBLE_EQ(json["relu_zero_fraction"]["2"].get<double>(), 0.5);
  EXPECT_EQ(json["step"], 5);
  const std::string text = health_text(r, 2);
  EXPECT_NE(text.find("health at step 5 (epoch 2): 1 flag(s)"), std::string::npos) << text;
  EXPECT_NE(text.find("FLAG 0.weight"), std::string::npos) << text;
}

TEST(HealthTest, PublishAppendsALineToMetricsAndNamesAPathItCannotOpen) {
  SmallNet net;
  const HealthReport r = health_report(*net.model, 6);
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("syncbn-health-test." + std::to_string(getpid()) + ".jsonl");
  EXPECT_EQ(publish_health(r, 2, 3, path.string()), "");
  std::ifstream in(path);
  std::string line, extra;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_FALSE(std::getline(in, extra));
  std::filesystem::remove(path);
  const nlohmann::json json = nlohmann::json::parse(line);
  EXPECT_EQ(json["health_step"], 6);
  EXPECT_EQ(json["epoch"], 2);
  EXPECT_EQ(json["health"]["step"], 6);
  try {
    publish_health(r, 2, 3, "/nonexistent-dir/metrics.jsonl");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "cannot open metrics file '/nonexistent-dir/metrics.jsonl' for appending"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace syncbn::train
