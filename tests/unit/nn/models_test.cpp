#include "syncbn/nn/models.h"

#include <gtest/gtest.h>

#include "syncbn/error.h"
#include "syncbn/nn/dropout.h"
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

// The children's type names in order ("Flatten Linear BatchNorm1d ReLU ...").
std::string layer_types(const Module& m) {
  std::string types;
  for (const auto& [name, child] : m.children())
    types += (types.empty() ? "" : " ") + child->type_name();
  return types;
}

TEST(ModelsTest, NormPlacementPutsTheNormBeforeOrAfterTheReLU) {
  ModelOptions o;
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear BatchNorm1d ReLU Linear BatchNorm1d ReLU Linear");
  o.norm_placement(parse_norm_placement("after-act"));
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear ReLU BatchNorm1d Linear ReLU BatchNorm1d Linear");
  o.name("cnn");
  EXPECT_EQ(layer_types(*make_model(o)),
            "Conv2d ReLU BatchNorm2d MaxPool2d Conv2d ReLU BatchNorm2d MaxPool2d Flatten Linear");
  EXPECT_TRUE(contains(state_names(*make_model(o)), "0.bias"));  // the ReLU follows the conv
  o.norm_placement(NormPlacement::kBeforeActivation);
  EXPECT_FALSE(contains(state_names(*make_model(o)), "0.bias"));  // the norm's shift replaces it
}

TEST(ModelsTest, DropoutSitsAfterTheActivationOrRightBeforeTheNorm) {
  ModelOptions o;
  o.dropout(0.3f);
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear BatchNorm1d ReLU Dropout Linear BatchNorm1d ReLU Dropout Linear");
  o.dropout_placement(parse_dropout_placement("before-norm"));
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear Dropout BatchNorm1d ReLU Linear Dropout BatchNorm1d ReLU Linear");
  o.norm_placement(NormPlacement::kAfterActivation);
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear ReLU Dropout BatchNorm1d Linear ReLU Dropout BatchNorm1d Linear");
  o.dropout_placement(DropoutPlacement::kAfterActivation);
  EXPECT_EQ(layer_types(*make_model(o)),
            "Flatten Linear ReLU BatchNorm1d Dropout Linear ReLU BatchNorm1d Dropout Linear");
  auto m = make_model(o);
  EXPECT_EQ(std::dynamic_pointer_cast<Dropout>(m->child("4"))->p(), 0.3f);
}

TEST(ModelsTest, DropoutMasksDifferAcrossLayersAndDropoutSeedsAndEvalDisablesThem) {
  ModelOptions o;
  o.dropout(0.5f);
  o.dropout_seed(1);
  auto a = make_model(o), b = make_model(o);
  o.dropout_seed(2);
  auto c = make_model(o);
  // Distinct samples: on identical rows the BN outputs 0, which no mask changes.
  std::vector<float> pixels(8 * 28 * 28);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>((i * 37) % 101);
  const Tensor x = Tensor::from_vector({8, 1, 28, 28}, pixels);
  const auto ya = a->forward(x).to_vector(), yb = b->forward(x).to_vector();
  EXPECT_EQ(ya, yb);                         // same seed (a rank's replicas): same masks
  EXPECT_NE(ya, c->forward(x).to_vector());  // another dropout_seed (another rank): other masks
  a->eval();
  b->eval();
  b->forward(x);  // eval draws no masks: the outputs stay equal whatever ran before
  EXPECT_EQ(a->forward(x).to_vector(), b->forward(x).to_vector());
}

TEST(ModelsTest, ResnetRejectsPlacementAndDropoutOptions) {
  ModelOptions o;
  o.name("resnet");
  o.norm_placement(NormPlacement::kAfterActivation);
  EXPECT_THROW(make_model(o), Error);
  o.norm_placement(NormPlacement::kBeforeActivation);
  o.dropout(0.1f);
  EXPECT_THROW(make_model(o), Error);
  EXPECT_THROW(parse_norm_placement("after"), Error);
  EXPECT_THROW(parse_dropout_placement("before-act"), Error);
}

}  // namespace
}  // namespace syncbn::nn
