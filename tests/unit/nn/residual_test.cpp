#include "syncbn/nn/residual.h"

#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/flatten.h"
#include "syncbn/nn/group_norm.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/sequential.h"

namespace syncbn::nn {
namespace {

using testing::check_gradients;
using testing::random_tensor;

NormFactory group_norm() {
  return [](int64_t channels) { return std::make_shared<GroupNorm>(2, channels); };
}
NormFactory no_norm() {
  return [](int64_t) { return ModulePtr(); };
}

TEST(ResidualTest, IdentityShortcutBackwardMatchesFiniteDifferences) {
  Residual block(4, 4, 1, group_norm(), 1);
  check_gradients(block, random_tensor({2, 4, 5, 5}, 2), 1e-3);
}

TEST(ResidualTest, ProjectionShortcutBackwardMatchesFiniteDifferences) {
  Residual block(3, 6, 2, no_norm(), 3);
  check_gradients(block, random_tensor({2, 3, 6, 5}, 4), 1e-3);
}

TEST(ResidualTest, BatchNormBlockBackwardMatchesFiniteDifferences) {
  Residual block(
      3, 4, 2, [](int64_t c) { return std::make_shared<BatchNorm2d>(BatchNormOptions(c)); }, 5);
  check_gradients(block, random_tensor({3, 3, 5, 5}, 6), 1e-3);
}

TEST(ResidualTest, IdentityBlockWithZeroResidualBranchIsReluOfInput) {
  // With conv2's weight zero the block is relu(0 + x): a check of the shortcut sum.
  Residual block(3, 3, 1, no_norm(), 7);
  for (auto& [name, param] : block.named_parameters()) {
    if (name.rfind("conv2", 0) == 0) param->value.zero_();
  }
  const Tensor x = random_tensor({2, 3, 4, 4}, 8);
  const auto y = block.forward(x).to_vector();
  const auto xv = x.to_vector();
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(y[i], std::max(0.0f, xv[i]));
}

TEST(ResidualTest, ChildNamesFollowTorchvisionBasicBlock) {
  Residual block(
      3, 6, 2, [](int64_t c) { return std::make_shared<BatchNorm2d>(BatchNormOptions(c)); }, 1);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : block.state_dict()) names.push_back(name);
  const std::vector<std::string> expected = {"conv1.weight",
                                             "bn1.weight",
                                             "bn1.bias",
                                             "bn1.running_mean",
                                             "bn1.running_var",
                                             "bn1.num_batches_tracked",
                                             "conv2.weight",
                                             "bn2.weight",
                                             "bn2.bias",
                                             "bn2.running_mean",
                                             "bn2.running_var",
                                             "bn2.num_batches_tracked",
                                             "downsample.0.weight",
                                             "downsample.1.weight",
                                             "downsample.1.bias",
                                             "downsample.1.running_mean",
                                             "downsample.1.running_var",
                                             "downsample.1.num_batches_tracked"};
  EXPECT_EQ(names, expected);
}

TEST(SequentialTest, BackwardChainsChildrenInReverseAndMatchesFiniteDifferences) {
  Sequential model;
  model.add(std::make_shared<Flatten>());
  model.add(std::make_shared<Linear>(12, 5, true, 1));
  model.add(std::make_shared<ReLU>());
  model.add(std::make_shared<Linear>(5, 3, true, 2));
  check_gradients(model, random_tensor({4, 3, 2, 2}, 9), 1e-3);
  EXPECT_EQ(model.named_parameters()[0].first, "1.weight");
}

}  // namespace
}  // namespace syncbn::nn
