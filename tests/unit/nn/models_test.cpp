#include "syncbn/nn/models.h"

#include <gtest/gtest.h>

#include "syncbn/error.h"
#include "syncbn/tensor.h"

namespace syncbn::nn {
namespace {

std::vector<std::string> state_names(const Module& m) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : m.state_dict()) names.push_back(name);
  return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(ModelsTest, EveryModelAndNormGivesTenLogitsPerSample) {
  for (const std::string model : {"mlp", "cnn", "resnet"}) {
    for (const std::string norm : {"none", "bn", "gn", "ln", "in"}) {
      if (model == "mlp" && norm == "in") continue;
      ModelOptions o;
      o.name(model);
      o.norm(parse_norm_kind(norm));
      auto m = make_model(o);
      const Tensor y = m->forward(Tensor::zeros({3, 1, 28, 28}));
      EXPECT_EQ(y.shape(), (Shape{3, 10})) << model << " + " << norm;
    }
  }
}

TEST(ModelsTest, MlpIsTheClassicBnNetwork) {
  ModelOptions o;
  auto m = make_model(o);
  const auto names = state_names(*m);
  EXPECT_TRUE(contains(names, "1.weight"));
  EXPECT_TRUE(contains(names, "2.running_mean"));
  EXPECT_EQ(m->child("1")->type_name(), "Linear");
  EXPECT_EQ(m->child("2")->type_name(), "BatchNorm1d");
  EXPECT_EQ(m->child("3")->type_name(), "ReLU");
  int64_t parameters = 0;
  for (auto& p : m->parameters()) parameters += p->value.numel();
  // 784*256+256 + 256*256+256 + 256*10+10 weights and biases, plus 2 * 2*256 BN parameters.
  EXPECT_EQ(parameters, 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 + 4 * 256);
}

TEST(ModelsTest, ResnetStateNamesAreTorchvisionLike) {
  ModelOptions o;
  o.name("resnet");
  auto m = make_model(o);
  const auto names = state_names(*m);
  EXPECT_TRUE(contains(names, "conv1.weight"));
  EXPECT_TRUE(contains(names, "layer1.0.bn1.running_mean"));
  EXPECT_TRUE(contains(names, "layer2.0.downsample.0.weight"));
  EXPECT_TRUE(contains(names, "fc.bias"));
}

TEST(ModelsTest, BadNamesAndCombinationsAreClearErrors) {
  ModelOptions o;
  o.name("vgg");
  EXPECT_THROW(make_model(o), Error);
  EXPECT_THROW(parse_norm_kind("batchnorm"), Error);
  o.name("mlp");
  o.norm(NormKind::kInstance);
  EXPECT_THROW(make_model(o), Error);
  o.norm(NormKind::kSyncBatch);  // no communicator
  EXPECT_THROW(make_model(o), Error);
}

}  // namespace
}  // namespace syncbn::nn
