#include "syncbn/tensor.h"

#include <gtest/gtest.h>

#include <string>

#include "support/error.h"
#include "syncbn/error.h"

namespace syncbn {
namespace {

using syncbn::testing::error_of;

TEST(TensorTest, CopiesShareStorageAndCloneDoesNot) {
  Tensor a = Tensor::zeros({2, 3});
  Tensor b = a;
  Tensor c = a.clone();
  b.data()[4] = 7.0f;
  EXPECT_EQ(a.data()[4], 7.0f);
  EXPECT_EQ(c.data()[4], 0.0f);
}

TEST(TensorTest, ViewAddressesPartOfTheStorage) {
  Tensor flat = Tensor::from_vector({6}, {0, 1, 2, 3, 4, 5});
  Tensor tail = flat.view({2, 2}, 2);
  EXPECT_EQ(tail.to_vector(), (std::vector<float>{2, 3, 4, 5}));
  tail.fill_(9.0f);
  EXPECT_EQ(flat.to_vector(), (std::vector<float>{0, 1, 9, 9, 9, 9}));
  EXPECT_THROW(flat.view({4}, 3), Error);
}

TEST(TensorTest, ReshapeInfersOneDimensionAndRejectsBadShapes) {
  Tensor a = Tensor::zeros({4, 3, 2});
  EXPECT_EQ(a.reshape({4, -1}).shape(), (Shape{4, 6}));
  EXPECT_THROW(a.reshape({5, -1}), Error);
  EXPECT_THROW(a.reshape({-1, -1}), Error);
  EXPECT_EQ(a.size(-1), 2);
  EXPECT_THROW(a.size(3), Error);
}

TEST(TensorTest, ShapeWhoseElementCountOverflowsIsAnError) {
  // 2^32 x 2^32 elements wrap a 64-bit count to 0.
  const int64_t big = int64_t{1} << 32;
  const std::string message = error_of([&] { Tensor::empty({big, big}); });
  EXPECT_NE(message.find("tensor shape [4294967296, 4294967296]"), std::string::npos) << message;
  EXPECT_NE(message.find("overflows"), std::string::npos) << message;
  // 2^31 x 2^31 elements fit, their 2^64 bytes do not.
  EXPECT_THROW(Tensor::empty({big / 2, big / 2}), Error);
  EXPECT_THROW(Tensor::zeros({4, 3}).reshape({big, big, -1}), Error);
}

TEST(TensorTest, OutOfMemoryNamesTheSizeAndTheShape) {
  // 2^60 floats = 4 EiB: more than any address space.
  const std::string message = error_of([] { Tensor::empty({int64_t{1} << 30, int64_t{1} << 30}); });
  EXPECT_NE(message.find("out of memory allocating 4 EiB (4611686018427387904 bytes)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("[1073741824, 1073741824]"), std::string::npos) << message;
}

TEST(TensorTest, CudaWithoutBackendOrDeviceIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_THROW(Tensor::zeros({2}, Device::cuda(0)), Error);
}

TEST(TensorTest, LargeHostBlocksAreReusedAfterRelease) {
  // A training step allocates the same activation sizes every step: the second allocation of
  // a size must get the block the first one released, not fresh pages from the OS.
  const float* first = nullptr;
  {
    Tensor a = Tensor::empty({512, 1024});
    first = a.data();
  }
  Tensor b = Tensor::empty({512, 1024});
  EXPECT_EQ(b.data(), first);
  Tensor c = Tensor::empty({512, 1024});  // b still holds it: c gets another block
  EXPECT_NE(c.data(), first);
}

TEST(TensorTest, ParseDevice) {
  EXPECT_EQ(parse_device("cpu"), Device::cpu());
  EXPECT_EQ(parse_device("cuda:1"), Device::cuda(1));
  EXPECT_THROW(parse_device("gpu"), Error);
  EXPECT_THROW(parse_device("cuda:x"), Error);
}

}  // namespace
}  // namespace syncbn
