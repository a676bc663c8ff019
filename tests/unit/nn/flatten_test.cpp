#include "syncbn/nn/flatten.h"

#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/random.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using testing::check_gradients;
using testing::random_tensor;

TEST(FlattenTest, KeepsTheBatchAndFlattensTheRestInRowMajorOrder) {
  nn::Flatten flatten;
  Tensor x = random_tensor({2, 3, 4, 5}, 1);
  Tensor y = flatten.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
  EXPECT_EQ(y.to_vector(), x.to_vector());
  Tensor dx = flatten.backward(random_tensor({2, 60}, 2));
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_EQ(flatten.forward(Tensor::zeros({3, 7})).shape(), (Shape{3, 7}));
}

TEST(FlattenTest, BackwardMatchesFiniteDifferences) {
  nn::Flatten flatten;
  check_gradients(flatten, random_tensor({3, 2, 2, 3}, 3));
}

TEST(FlattenTest, EmptyBatchAndShapeErrors) {
  nn::Flatten flatten;
  EXPECT_THROW(flatten.backward(Tensor::zeros({2, 6})), Error);  // before any forward
  EXPECT_EQ(flatten.forward(Tensor::zeros({0, 3, 2})).shape(), (Shape{0, 6}));
  EXPECT_EQ(flatten.backward(Tensor::zeros({0, 6})).shape(), (Shape{0, 3, 2}));
  EXPECT_THROW(flatten.forward(Tensor::zeros({5})), Error);  // no dimension to flatten
  flatten.forward(Tensor::zeros({2, 3, 2}));
  EXPECT_THROW(flatten.backward(Tensor::zeros({2, 5})), Error);
  EXPECT_EQ(flatten.type_name(), "Flatten");
  EXPECT_EQ(flatten.describe(), "start_dim=1, end_dim=-1");
}

}  // namespace
}  // namespace syncbn
